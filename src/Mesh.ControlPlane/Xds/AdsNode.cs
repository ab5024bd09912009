using System.Globalization;
using Mesh.ControlPlane.Telemetry;
using Mesh.Xds.Telemetry;
using Mesh.Xds.Envoy.Config.Core.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// What an ADS client says about itself in its <see cref="Node"/>, read the same way by the state-of-the-world and the
/// incremental stream, and client-supplied text made safe to log.
/// </summary>
internal static class AdsNode
{
    private const int MaxLoggedTextLength = 512;
    private const string MeshClientUserAgent = "mesh-dotnet";

    /// <summary>Client-supplied text made safe to log: control characters replaced, at most 512 characters.</summary>
    public static string Printable(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return string.Empty;
        }

        var truncated = text.Length > MaxLoggedTextLength;
        var span = truncated ? text.AsSpan(0, MaxLoggedTextLength) : text.AsSpan();
        if (!truncated && !span.ContainsAnyInRange('\u0000', '\u001f') && !span.Contains('\u007f') && !HasFormatOrSeparator(span))
        {
            return text;
        }

        var builder = new System.Text.StringBuilder(span.Length + 16);
        foreach (var c in span)
        {
            builder.Append(char.IsControl(c) || IsFormatOrSeparator(c) ? '?' : c);
        }

        if (truncated)
        {
            builder.Append("…(").Append((text.Length - MaxLoggedTextLength).ToString(CultureInfo.InvariantCulture)).Append(" more characters)");
        }

        return builder.ToString();
    }

    // Line/paragraph separators and bidi controls can forge log lines or hide text as surely as CR/LF.
    private static bool IsFormatOrSeparator(char c) =>
        char.GetUnicodeCategory(c) is System.Globalization.UnicodeCategory.LineSeparator or System.Globalization.UnicodeCategory.ParagraphSeparator or System.Globalization.UnicodeCategory.Format;

    private static bool HasFormatOrSeparator(ReadOnlySpan<char> span)
    {
        foreach (var c in span)
        {
            if (c > '\u007f' && IsFormatOrSeparator(c))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Whether the node is a proxyless gRPC client that is not the Mesh client: Istio's GENERATOR=grpc metadata, or a gRPC
    /// user agent ("gRPC Node Pure JS", "gRPC Go"…). The Mesh client says user_agent_name "mesh-dotnet"; Envoy says "envoy".
    /// </summary>
    public static bool IsStandardGrpcClient(Node node)
    {
        ArgumentNullException.ThrowIfNull(node);
        if (IsMeshClient(node) || string.Equals(node.UserAgentName, "envoy", StringComparison.Ordinal))
        {
            return false;
        }

        return node.UserAgentName.StartsWith("gRPC", StringComparison.OrdinalIgnoreCase)
            || (node.Metadata?.Fields.TryGetValue("GENERATOR", out var generator) == true && generator.StringValue == "grpc");
    }

    /// <summary>
    /// The client's version for <c>pilot_xds</c>: Istio's ISTIO_VERSION metadata, else the node's user agent version; null
    /// when it has neither or it does not look like a version (the label must stay a short, printable token).
    /// </summary>
    public static string? VersionOf(Node node)
    {
        var version = node.Metadata?.Fields.TryGetValue("ISTIO_VERSION", out var value) == true && value.StringValue is { Length: > 0 } istio
            ? istio
            : node.UserAgentVersion;

        version = SemanticVersion.WithoutBuildMetadata(version);
        return version is { Length: > 0 and <= 64 } && version.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' or '+') ? version : null;
    }

    /// <summary>Whether the node is Mesh.Client's (its user agent), not a standard xDS client such as grpc-js-xds or Envoy.</summary>
    public static bool IsMeshClient(Node node) => string.Equals(node.UserAgentName, MeshClientUserAgent, StringComparison.Ordinal);

    /// <summary>
    /// Node metadata <c>LABELS</c>, Istio's map of strings: values of any other kind cannot equal a selector's value and are
    /// left out. What the client claims, never proof of anything.
    /// </summary>
    public static Dictionary<string, string> LabelsOf(Node node)
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (node.Metadata?.Fields.TryGetValue("LABELS", out var value) == true && value.StructValue is { } fields)
        {
            foreach (var (key, label) in fields.Fields)
            {
                if (label.KindCase == Google.Protobuf.WellKnownTypes.Value.KindOneofCase.StringValue)
                {
                    labels[key] = label.StringValue;
                }
            }
        }

        return labels;
    }

    /// <summary>Node metadata NAMESPACE, else the first label of the node id's domain part, else "default".</summary>
    public static string NamespaceOf(Node node)
    {
        if (node.Metadata?.Fields.TryGetValue("NAMESPACE", out var value) == true && value.StringValue is { Length: > 0 } ns)
        {
            return ns;
        }

        var parts = node.Id.Split('~');
        if (parts.Length == 4 && parts[3].Length > 0)
        {
            var dot = parts[3].IndexOf('.', StringComparison.Ordinal);
            return dot > 0 ? parts[3][..dot] : parts[3];
        }

        return "default";
    }
}
