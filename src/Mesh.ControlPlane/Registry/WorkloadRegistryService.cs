using System.Collections.Immutable;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.Xds.Registry.V1;
using ProtoWorkloadEntry = Mesh.Xds.Registry.V1.WorkloadEntry;

namespace Mesh.ControlPlane.Registry;

/// <summary>gRPC front of <see cref="WorkloadLeaseRegistry"/> (mesh.registry.v1.WorkloadRegistry).</summary>
internal sealed class WorkloadRegistryService(WorkloadLeaseRegistry registry, ConfigStore store) : WorkloadRegistry.WorkloadRegistryBase
{
    public override Task<RegisterResponse> Register(RegisterRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        var workload = Validate(request.Workload);
        TimeSpan? ttl = request.LeaseTtl is null ? null : request.LeaseTtl.ToTimeSpan();
        var lease = registry.Register(workload, ttl);
        var response = new RegisterResponse { LeaseId = lease.Id, LeaseTtl = Duration.FromTimeSpan(lease.Ttl) };
        response.Services.AddRange(MatchingHosts(store.Current, lease.Workload));
        return Task.FromResult(response);
    }

    public override Task<RenewResponse> Renew(RenewRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        var lease = registry.Renew(request.LeaseId)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"lease '{request.LeaseId}' is unknown or expired; register again"));
        return Task.FromResult(new RenewResponse { LeaseTtl = Duration.FromTimeSpan(lease.Ttl) });
    }

    public override Task<DeregisterResponse> Deregister(DeregisterRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!registry.Deregister(request.LeaseId))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"lease '{request.LeaseId}' is unknown or expired"));
        }

        return Task.FromResult(new DeregisterResponse());
    }

    internal static IEnumerable<string> MatchingHosts(MeshSnapshot snapshot, WorkloadInstance workload) =>
        snapshot.Config.ServiceEntries
            .Where(s => s.WorkloadSelector is not null && s.Namespace == workload.Namespace && HostNames.LabelsMatch(s.WorkloadSelector, workload.Labels))
            .SelectMany(s => s.Hosts)
            .Order(StringComparer.Ordinal);

    internal static WorkloadInstance Validate(ProtoWorkloadEntry? entry)
    {
        if (entry is null)
        {
            throw Invalid("workload is required");
        }

        var ns = string.IsNullOrEmpty(entry.Namespace) ? "default" : entry.Namespace;
        if (string.IsNullOrEmpty(entry.Address) || !YamlConfigLoader.IsAddress(entry.Address))
        {
            throw Invalid($"workload.address '{entry.Address}' must be an IP address or a DNS name");
        }

        foreach (var (name, port) in entry.Ports)
        {
            if (string.IsNullOrEmpty(name) || port is < 1 or > 65535)
            {
                throw Invalid($"workload.ports['{name}'] = {port}: port names must be non-empty and ports 1-65535");
            }
        }

        if (entry.Labels.Count == 0)
        {
            throw Invalid("workload.labels must contain at least one label (ServiceEntries select workloads by label)");
        }

        if (entry.Labels.Any(l => string.IsNullOrEmpty(l.Key)))
        {
            throw Invalid("workload.labels keys must be non-empty");
        }

        return new WorkloadInstance(
            ns, entry.Name, entry.Address,
            entry.Ports.ToImmutableSortedDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal),
            entry.Labels.ToImmutableSortedDictionary(l => l.Key, l => l.Value, StringComparer.Ordinal),
            entry.ServiceAccount, entry.Locality, entry.Weight, EndpointSources.Registration, LeaseId: null);
    }

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}
