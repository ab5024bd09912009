namespace Mesh.Client.Authorization;

internal enum PathNormalizationResult
{
    Normalized,

    /// <summary>An encoded slash or backslash (<c>%2F</c>, <c>%5C</c>) while the listener says REJECT_REQUEST: answer 400.</summary>
    EncodedSlash,

    /// <summary>Not an origin-form path (does not start with '/').</summary>
    NotOriginForm,

    /// <summary>An encoded NUL (<c>%00</c>): always 400, as Envoy does (Kestrel rejects it too).</summary>
    EncodedNul,

    /// <summary>
    /// A literal '\' (or <c>%5C</c> being decoded) while normalizing: Envoy would read it as '/', but Kestrel and the
    /// ASP.NET Core router keep it inside its segment, so the two would see different paths: answer 400.
    /// </summary>
    Backslash,

    /// <summary>
    /// A '#' anywhere in the target: a fragment is never part of a request (RFC 9112), and Kestrel keeps it in the path,
    /// so <c>/public/a#/../../admin</c> would be authorized as <c>/public/a</c> while the app serves <c>/admin</c>: 400, as
    /// Envoy answers since 1.16.5 (the fragment bypass of its own authorization).
    /// </summary>
    Fragment,
}

/// <summary>What Envoy does with <c>%2F %2f %5C %5c</c> (HttpConnectionManager.path_with_escaped_slashes_action).</summary>
internal enum EscapedSlashAction
{
    /// <summary>400; also what an unset action means here (Envoy's own default keeps them, we refuse the ambiguity).</summary>
    Reject,

    /// <summary>Left encoded: the escape stays inside its segment, as Kestrel leaves <c>%2F</c> (Istio's default).</summary>
    Keep,

    /// <summary>Decoded before normalization (Istio DECODE_AND_MERGE_SLASHES).</summary>
    Unescape,
}

/// <summary>
/// The path handling an inbound listener asks for (Envoy HttpConnectionManager <c>normalize_path</c>,
/// <c>merge_slashes</c>, <c>path_with_escaped_slashes_action</c>; Istio's meshConfig.pathNormalization sets them).
/// </summary>
internal readonly record struct PathNormalizationOptions(bool Normalize, bool MergeSlashes, EscapedSlashAction EscapedSlashes)
{
    /// <summary>Istio's DEFAULT (BASE) with escaped slashes refused: what a listener that sets nothing gets.</summary>
    public static PathNormalizationOptions Default { get; } = new(Normalize: true, MergeSlashes: false, EscapedSlashAction.Reject);
}

/// <summary>
/// Envoy/Istio path normalization before authorization: query dropped; with <c>normalize_path</c>, unreserved
/// percent-escapes decoded (case-insensitively), other escapes kept with uppercase hex, RFC 3986 remove_dot_segments,
/// and a '\' refused (Envoy turns it into '/', but Kestrel's router does not split on it: authorizing Envoy's reading
/// would let <c>/x\..\public/secret</c> pass as <c>/public/secret</c> while the app routes <c>/{dir}/secret</c>); with <c>merge_slashes</c>, duplicate slashes merged (after dot segments, as Envoy
/// and Kestrel order it). <c>%00</c> and a '#' are always refused. Works in place, allocates nothing.
/// </summary>
internal static class PathNormalizer
{
    /// <summary>Normalizes the path of <paramref name="target"/> into <paramref name="buffer"/> (at least as long as the target).</summary>
    public static PathNormalizationResult Normalize(ReadOnlySpan<char> target, Span<char> buffer, PathNormalizationOptions options, out int length)
    {
        length = 0;
        if (target.Contains('#'))
        {
            return PathNormalizationResult.Fragment;
        }

        var end = target.IndexOf('?');
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
                if (value == '\0')
                {
                    return PathNormalizationResult.EncodedNul;
                }

                if (value is '/' or '\\' && options.EscapedSlashes != EscapedSlashAction.Keep)
                {
                    if (options.EscapedSlashes == EscapedSlashAction.Reject)
                    {
                        return PathNormalizationResult.EncodedSlash;
                    }

                    if (options.Normalize && value == '\\')
                    {
                        return PathNormalizationResult.Backslash;
                    }

                    buffer[written++] = value;
                }
                else if (options.Normalize && IsUnreserved(value))
                {
                    buffer[written++] = value;
                }
                else
                {
                    buffer[written++] = '%';
                    buffer[written++] = options.Normalize ? char.ToUpperInvariant(path[i + 1]) : path[i + 1];
                    buffer[written++] = options.Normalize ? char.ToUpperInvariant(path[i + 2]) : path[i + 2];
                }

                i += 2;
            }
            else if (c == '\\' && options.Normalize)
            {
                return PathNormalizationResult.Backslash;
            }
            else
            {
                buffer[written++] = c;
            }
        }

        if (options.Normalize)
        {
            written = RemoveDotSegments(buffer[..written]);
        }

        length = options.MergeSlashes ? MergeSlashes(buffer[..written]) : written;
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
