using System.Collections.Immutable;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Sources;
using Mesh.Xds.Registry.V1;
using ProtoWorkloadEntry = Mesh.Xds.Registry.V1.WorkloadEntry;

namespace Mesh.ControlPlane.Registry;

/// <summary>gRPC front of <see cref="WorkloadLeaseRegistry"/> (mesh.registry.v1.WorkloadRegistry).</summary>
/// <remarks>
/// On the TLS port the caller must be authenticated and may register only as itself, and only into
/// services that run as its identity. On the plaintext port (ControlPlane:PlaintextRegistration) anyone may register.
/// </remarks>
internal sealed class WorkloadRegistryService(
    WorkloadLeaseRegistry registry, ConfigStore store, ControlPlaneOptions options, CallerAuthentication authentication) : WorkloadRegistry.WorkloadRegistryBase
{
    public override Task<RegisterResponse> Register(RegisterRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        var caller = Caller(context);
        var workload = Validate(request.Workload);
        if (!store.HasValidConfig)
        {
            // Authorization reads the ServiceEntries: without a valid folder every workload would pass unchecked.
            throw new RpcException(new Status(StatusCode.Unavailable, "control plane not ready: no valid config folder loaded yet (see /healthz/ready); retry later"));
        }

        if (caller is not null)
        {
            Authorize(caller, workload, store.Current);
        }
        TimeSpan? ttl = request.LeaseTtl is null ? null : request.LeaseTtl.ToTimeSpan();
        var lease = registry.Register(workload, ttl);
        var response = new RegisterResponse { LeaseId = lease.Id, LeaseTtl = Duration.FromTimeSpan(lease.Ttl) };
        response.Services.AddRange(MatchingHosts(store.Current, lease.Workload));
        return Task.FromResult(response);
    }

    public override Task<RenewResponse> Renew(RenewRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        AuthorizeLease(Caller(context), request.LeaseId);
        var lease = registry.Renew(request.LeaseId)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"lease '{request.LeaseId}' is unknown or expired; register again"));
        return Task.FromResult(new RenewResponse { LeaseTtl = Duration.FromTimeSpan(lease.Ttl) });
    }

    public override Task<DeregisterResponse> Deregister(DeregisterRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        AuthorizeLease(Caller(context), request.LeaseId);
        if (!registry.Deregister(request.LeaseId))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"lease '{request.LeaseId}' is unknown or expired"));
        }

        return Task.FromResult(new DeregisterResponse());
    }

    /// <summary>The authenticated caller on the TLS port; null on the plaintext port (when allowed there).</summary>
    private WorkloadIdentity? Caller(ServerCallContext context)
    {
        if (SecureTransport.IsSecure(context))
        {
            return authentication.Authenticate(context);
        }

        if (!options.PlaintextRegistration)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied,
                "registration on the plaintext port is disabled (ControlPlane:PlaintextRegistration=false); register over the TLS port (ControlPlane:SecureAddress) with a bootstrap token or the workload certificate"));
        }

        return null;
    }

    private void AuthorizeLease(WorkloadIdentity? caller, string leaseId)
    {
        if (caller is null || registry.Find(leaseId) is not { } lease)
        {
            return;
        }

        if (lease.Workload.Namespace != caller.Namespace || lease.Workload.ServiceAccount != caller.ServiceAccount)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied,
                $"caller {caller.SpiffeId} may not change lease '{leaseId}', which belongs to namespace '{lease.Workload.Namespace}' service account '{lease.Workload.ServiceAccount}'"));
        }
    }

    /// <summary>
    /// The workload must be the caller, and every ServiceEntry selecting it must run as the caller's SPIFFE ID:
    /// spec.subjectAltNames when set, else the convention service account = ServiceEntry name.
    /// </summary>
    internal static void Authorize(WorkloadIdentity caller, WorkloadInstance workload, MeshSnapshot snapshot)
    {
        if (workload.Namespace != caller.Namespace || workload.ServiceAccount != caller.ServiceAccount)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied,
                $"workload.namespace '{workload.Namespace}' and workload.service_account '{workload.ServiceAccount}' must equal the caller's identity {caller.SpiffeId} (namespace '{caller.Namespace}', service account '{caller.ServiceAccount}'); register as yourself"));
        }

        foreach (var service in snapshot.Config.ServiceEntries)
        {
            if (service.WorkloadSelector is null || service.Namespace != workload.Namespace || !HostNames.LabelsMatch(service.WorkloadSelector, workload.Labels))
            {
                continue;
            }

            var allowed = SpiffeId.AllowedIdentities(service, caller.TrustDomain);
            if (!allowed.Contains(caller.SpiffeId, StringComparer.Ordinal))
            {
                var host = service.Hosts.IsEmpty ? $"{service.Namespace}/{service.Name}" : service.Hosts[0];
                throw new RpcException(new Status(StatusCode.PermissionDenied,
                    $"workload {caller.SpiffeId} may not register as an instance of {host}, which runs as {string.Join(" or ", allowed)} " +
                    $"(ServiceEntry {service.Namespace}/{service.Name} {(service.SubjectAltNames.IsEmpty ? "has no spec.subjectAltNames, so its service account must equal its name" : "spec.subjectAltNames")}); change the workload's labels or the ServiceEntry"));
            }
        }
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
