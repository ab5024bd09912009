using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Registration;

/// <summary>
/// Names a host gave its Kestrel endpoints for the workload's registration (Istio's WorkloadEntry <c>ports</c> maps a
/// ServiceEntry port's name to the workload's port): the sidecar's TCP tunnel ports register under their service port's
/// name. Unnamed endpoints keep the registration's default names (<c>http</c>, <c>http-2</c>…). Ports are read from the
/// endpoints when asked, so a port-0 binding counts by its bound port.
/// </summary>
internal sealed class MeshPortNames
{
    private readonly Lock _gate = new();
    private (ListenOptions Listen, string Name)[] _names = [];

    public void Add(ListenOptions listen, string name)
    {
        ArgumentNullException.ThrowIfNull(listen);
        ArgumentException.ThrowIfNullOrEmpty(name);
        lock (_gate)
        {
            if (Array.Exists(_names, n => n.Name == name && !ReferenceEquals(n.Listen, listen)))
            {
                throw new InvalidOperationException($"The mesh port name '{name}' is given to two endpoints.");
            }

            Volatile.Write(ref _names, [.. _names.Where(n => !ReferenceEquals(n.Listen, listen)), (listen, name)]);
        }
    }

    /// <summary>The name given to the endpoint bound to <paramref name="localPort"/>, or null.</summary>
    public string? NameOf(int localPort)
    {
        foreach (var (listen, name) in Volatile.Read(ref _names))
        {
            if (listen.IPEndPoint?.Port == localPort)
            {
                return name;
            }
        }

        return null;
    }
}

/// <summary>Kestrel endpoint naming for the registration, for hosts inside this repository (the sidecar).</summary>
internal static class MeshPortNameListenOptionsExtensions
{
    /// <summary>Registers this endpoint's port under <paramref name="name"/> in the workload's WorkloadEntry.</summary>
    public static ListenOptions WithMeshPortName(this ListenOptions listen, string name)
    {
        ArgumentNullException.ThrowIfNull(listen);
        (listen.ApplicationServices?.GetService<MeshPortNames>()
            ?? throw new InvalidOperationException("WithMeshPortName needs AddServiceMesh() before the endpoint is configured.")).Add(listen, name);
        return listen;
    }
}
