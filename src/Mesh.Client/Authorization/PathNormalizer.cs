namespace Mesh.Client.Authorization;

internal enum PathNormalizationResult
{
    Normalized,

    /// <summary>An encoded slash or backslash (<c>%2F</c>, <c>%5C</c>): rejected like Istio's default, answer 400.</summary>
    EncodedSlash,

    /// <summary>Not an origin-form path (does not start with '/').</summary>
    NotOriginForm,
}

/// <summary>
/// Envoy/Istio path normalization before authorization (normalize_path + merge_slashes, escaped slashes rejected):
/// query dropped, unreserved percent-escapes decoded (case-insensitively), other escapes kept with uppercase hex,
/// literal '\' treated as '/', RFC 3986 remove_dot_segments, duplicate slashes merged. Works in place, allocates nothing.
/// </summary>
internal static class PathNormalizer
{
    /// <summary>Normalizes the path of <paramref name="target"/> into <paramref name="buffer"/> (at least as long as the target).</summary>
    public static PathNormalizationResult Normalize(ReadOnlySpan<char> target, Span<char> buffer, out int length)
    {
        length = 0;
        var end = target.IndexOfAny('?', '#');
        var path = end < 0 ? target : target[..end];
        if (path.IsEmpty || path[0] != '/')
        {
            return PathNormalizationResult.NotOriginForm;
        }

        var written = 0;
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (c == '%' && i + 2 < path.Length && IsHex(path[i + 1]) && IsHex(path[i + 2]))
            {
                var value = (char)((HexValue(path[i + 1]) << 4) | HexValue(path[i + 2]));
                if (value is '/' or '\\')
                {
                    return PathNormalizationResult.EncodedSlash;
                }

                if (IsUnreserved(value))
                {
                    buffer[written++] = value;
                }
                else
                {
                    buffer[written++] = '%';
                    buffer[written++] = char.ToUpperInvariant(path[i + 1]);
                    buffer[written++] = char.ToUpperInvariant(path[i + 2]);
                }

                i += 2;
            }
            else
            {
                buffer[written++] = c == '\\' ? '/' : c;
            }
        }

        written = RemoveDotSegments(buffer[..written]);
        length = MergeSlashes(buffer[..written]);
        return PathNormalizationResult.Normalized;
    }

    private static int RemoveDotSegments(Span<char> path)
    {
        var write = 0;
        var read = 0;
        while (read < path.Length)
        {
            var next = path[(read + 1)..].IndexOf('/');
            var end = next < 0 ? path.Length : read + 1 + next;
            var segment = path[(read + 1)..end];
            var last = end == path.Length;
            if (segment is ".")
            {
                if (last)
                {
                    path[write++] = '/';
                }
            }
            else if (segment is "..")
            {
                var slash = path[..write].LastIndexOf('/');
                write = slash < 0 ? 0 : slash;
                if (last)
                {
                    path[write++] = '/';
                }
            }
            else
            {
                path[read..end].CopyTo(path[write..]);
                write += end - read;
            }

            read = end;
        }

        if (write == 0)
        {
            path[write++] = '/';
        }

        return write;
    }

    private static int MergeSlashes(Span<char> path)
    {
        var write = 0;
        for (var read = 0; read < path.Length; read++)
        {
            if (path[read] == '/' && write > 0 && path[write - 1] == '/')
            {
                continue;
            }

            path[write++] = path[read];
        }

        return write;
    }

    private static bool IsUnreserved(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~';

    private static bool IsHex(char c) => char.IsAsciiHexDigit(c);

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
