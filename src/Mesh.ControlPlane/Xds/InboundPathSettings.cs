using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using EscapedSlashes = Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3.HttpConnectionManager.Types.PathWithEscapedSlashesAction;

namespace Mesh.ControlPlane.Xds;

/// <summary>Istio's meshConfig.pathNormalization.normalization values (the option spells them as Istio does).</summary>
internal enum PathNormalizationMode
{
    /// <summary>The path as received (Envoy normalize_path=false).</summary>
    None,

    /// <summary>RFC 3986 normalization: unreserved escapes decoded, dot segments removed (a '\' is refused with 400 by the mesh client, see <see cref="InboundPathSettings"/>).</summary>
    Base,

    /// <summary><see cref="Base"/>, then <c>//</c> merged into <c>/</c>.</summary>
    MergeSlashes,

    /// <summary><c>%2F %5C</c> decoded first, then <see cref="MergeSlashes"/>.</summary>
    DecodeAndMergeSlashes,
}

/// <summary>
/// How inbound paths are normalized and matched, mesh-wide. The defaults follow ASP.NET Core, so what RBAC sees is
/// what the app's router routes. The default mode is MERGE_SLASHES: Kestrel decodes escapes and removes dot segments
/// (what BASE does), and merging <c>//</c> on top only adds safety for catch-all routes and file providers (the router
/// never routes <c>/a//b</c> to <c>/a/b</c>, so a DENY still holds). The router ignores case and one trailing slash.
/// <c>%2F</c> stays encoded in Kestrel and is refused with 400 rather than guessed. A '\' (and <c>%5C</c> under
/// DECODE_AND_MERGE_SLASHES) is refused with 400 by the client in every normalizing mode: Envoy reads it as '/', but
/// Kestrel's router does not split on it, so <c>/x\..\public/secret</c> would be authorized as <c>/public/secret</c>
/// while the app runs <c>/{dir}/secret</c>.
/// Normalization travels in each inbound listener's HttpConnectionManager; case and trailing slash are written
/// into the RBAC path matchers themselves (<c>ignore_case</c>, an OR with the other spelling), so any xDS
/// consumer that reads our RBAC reaches the same decision.
/// </summary>
internal sealed record InboundPathSettings(
    PathNormalizationMode Normalization = PathNormalizationMode.MergeSlashes,
    bool RejectEscapedSlashes = true,
    bool IgnoreCase = true,
    bool IgnoreTrailingSlash = true)
{
    /// <summary>The ASP.NET Core defaults described on the type.</summary>
    public static InboundPathSettings Default { get; } = new();

    /// <summary>Istio's own behaviour (pathNormalization BASE, escaped slashes kept, paths case- and slash-exact).</summary>
    public static InboundPathSettings Istio { get; } = new(PathNormalizationMode.Base, RejectEscapedSlashes: false, IgnoreCase: false, IgnoreTrailingSlash: false);

    /// <summary>The option spellings of <see cref="PathNormalizationMode"/> (Istio's).</summary>
    public static string ModeName(PathNormalizationMode mode) => mode switch
    {
        PathNormalizationMode.None => "NONE",
        PathNormalizationMode.Base => "BASE",
        PathNormalizationMode.MergeSlashes => "MERGE_SLASHES",
        _ => "DECODE_AND_MERGE_SLASHES",
    };

    public static bool TryParseMode(string? text, out PathNormalizationMode mode)
    {
        foreach (var candidate in System.Enum.GetValues<PathNormalizationMode>())
        {
            if (string.Equals(text, ModeName(candidate), StringComparison.Ordinal))
            {
                mode = candidate;
                return true;
            }
        }

        mode = default;
        return false;
    }

    /// <summary>
    /// Sets Envoy's path fields on an inbound HttpConnectionManager: normalize_path and merge_slashes as istiod sets
    /// them for the mode; escaped slashes UNESCAPE_AND_FORWARD under DECODE_AND_MERGE_SLASHES, else REJECT_REQUEST or
    /// KEEP_UNCHANGED (istiod's choice) per <see cref="RejectEscapedSlashes"/>.
    /// </summary>
    public void ApplyTo(HttpConnectionManager manager)
    {
        ArgumentNullException.ThrowIfNull(manager);
        manager.NormalizePath = Normalization != PathNormalizationMode.None;
        manager.MergeSlashes = Normalization is PathNormalizationMode.MergeSlashes or PathNormalizationMode.DecodeAndMergeSlashes;
        manager.PathWithEscapedSlashesAction = Normalization == PathNormalizationMode.DecodeAndMergeSlashes
            ? EscapedSlashes.UnescapeAndForward
            : RejectEscapedSlashes ? EscapedSlashes.RejectRequest : EscapedSlashes.KeepUnchanged;
    }
}
