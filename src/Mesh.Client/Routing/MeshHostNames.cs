using Microsoft.Extensions.Options;

namespace Mesh.Client.Routing;

/// <summary>
/// Decides which host names could be mesh services before the first snapshot arrived, so that calls
/// to them fail fast with "not yet synced" instead of falling through to DNS: single-label names
/// (<c>orders</c>, except <c>localhost</c>), <c>name.&lt;namespace&gt;</c> and <c>*.svc.&lt;cluster domain&gt;</c>.
/// </summary>
internal sealed class MeshHostNames
{
    private readonly string _namespaceSuffix;
    private readonly string _clusterSuffix;

    /// <summary>The constructor the container uses: the names of this workload's namespace and cluster domain.</summary>
    public MeshHostNames(IOptions<ServiceMeshOptions> options)
        : this(options.Value.Namespace, options.Value.ClusterDomain)
    {
    }

    internal MeshHostNames(string @namespace, string clusterDomain)
    {
        ArgumentException.ThrowIfNullOrEmpty(@namespace);
        ArgumentException.ThrowIfNullOrEmpty(clusterDomain);
        Namespace = @namespace;
        ClusterDomain = clusterDomain;
        _namespaceSuffix = "." + @namespace;
        _clusterSuffix = ".svc." + clusterDomain;
    }

    public string Namespace { get; }

    public string ClusterDomain { get; }

    public bool LooksLikeMeshHost(ReadOnlySpan<char> host) =>
        !host.IsEmpty && !char.IsAsciiDigit(host[^1]) && !host.Contains(':') && LooksLikeServiceName(host);

    /// <summary>
    /// As <see cref="LooksLikeMeshHost"/> for a host already known to be a DNS name (not an address), so a name ending in a
    /// digit (<c>redis-0</c>) counts too.
    /// </summary>
    public bool LooksLikeServiceName(ReadOnlySpan<char> host)
    {
        if (host.IsEmpty || host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var dot = host.IndexOf('.');
        return dot < 0
            || (host.EndsWith(_namespaceSuffix, StringComparison.OrdinalIgnoreCase) && host.LastIndexOf('.') == dot)
            || host.EndsWith(_clusterSuffix, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Gets the fully qualified name for a short service name, e.g. <c>orders</c> → <c>orders.default.svc.cluster.local</c>.</summary>
    public string Qualify(string host)
    {
        ArgumentException.ThrowIfNullOrEmpty(host);
        if (host.EndsWith(_clusterSuffix, StringComparison.OrdinalIgnoreCase))
        {
            return host;
        }

        var dots = host.AsSpan().Count('.');
        return dots switch
        {
            0 => $"{host}.{Namespace}.svc.{ClusterDomain}",
            1 => $"{host}.svc.{ClusterDomain}",
            _ when host.EndsWith(".svc", StringComparison.OrdinalIgnoreCase) => $"{host}.{ClusterDomain}",
            _ => host,
        };
    }
}
