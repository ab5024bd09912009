using System.Collections.Immutable;
using System.Globalization;
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
/// On the TLS port the caller must present its workload certificate (a bootstrap token only buys one) and may register only as itself, only into services that run as its
/// identity, and only address:ports no other identity holds (a lease or a WorkloadEntry with a serviceAccount); Renew
/// checks all of it again. On the plaintext port (ControlPlane:PlaintextRegistration) anyone may register, but never
/// touch an address or a lease of a certified identity.
/// </remarks>
internal sealed class WorkloadRegistryService(
    WorkloadLeaseRegistry registry, ConfigStore store, ControlPlaneOptions options, CertificateAuthority ca) : WorkloadRegistry.WorkloadRegistryBase
{
    /// <summary>Ports one registration may carry (each is an inbound listener).</summary>
    internal const int MaxPorts = 64;

    /// <summary>Labels one registration may carry.</summary>
    internal const int MaxLabels = 64;

    internal const int MaxLabelNameLength = 63;
    internal const int MaxLabelPrefixLength = 253;
    internal const int MaxLabelValueLength = 63;

    public override Task<RegisterResponse> Register(RegisterRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        var caller = Caller(context);
        var workload = Validate(request.Workload);
        RequireValidConfig();

        var snapshot = store.Current;
        if (caller is not null)
        {
            Authorize(caller, workload, snapshot);
            workload = workload with { CertifiedIdentity = true };
        }

        var claimed = ClaimedPorts(snapshot, workload);
        CheckDeclaredOwners(snapshot, workload, claimed, options.TrustDomain);
        TimeSpan? ttl = request.LeaseTtl is null ? null : request.LeaseTtl.ToTimeSpan();
        WorkloadLease lease;
        try
        {
            lease = registry.Register(workload, ttl, claimed);
        }
        catch (LeaseRefusedException ex)
        {
            // Held by another identity is a question of who is asking (the holder's own request succeeds): PERMISSION_DENIED.
            throw new RpcException(new Status(ex.Reason == LeaseRefusal.LimitReached ? StatusCode.ResourceExhausted : StatusCode.PermissionDenied, ex.Message));
        }

        var response = new RegisterResponse { LeaseId = lease.Id, LeaseTtl = Duration.FromTimeSpan(lease.Ttl) };
        response.Services.AddRange(MatchingHosts(snapshot, lease.Workload));
        return Task.FromResult(response);
    }

    public override Task<RenewResponse> Renew(RenewRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        var caller = Caller(context);
        var held = registry.Find(request.LeaseId) ?? throw UnknownLease(request.LeaseId);
        AuthorizeLease(caller, held, "renew");
        RequireValidConfig();
        if (caller is not null)
        {
            // The config may have changed since Register (a ServiceEntry's subjectAltNames, a new WorkloadEntry): check again.
            Authorize(caller, held.Workload, store.Current);
            CheckDeclaredOwners(store.Current, held.Workload, held.ClaimedPorts, options.TrustDomain);
        }

        var lease = registry.Renew(request.LeaseId) ?? throw UnknownLease(request.LeaseId);
        return Task.FromResult(new RenewResponse { LeaseTtl = Duration.FromTimeSpan(lease.Ttl) });
    }

    public override Task<DeregisterResponse> Deregister(DeregisterRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        var caller = Caller(context);
        var held = registry.Find(request.LeaseId) ?? throw UnknownLease(request.LeaseId);
        AuthorizeLease(caller, held, "deregister");
        if (!registry.Deregister(request.LeaseId))
        {
            throw UnknownLease(request.LeaseId);
        }

        return Task.FromResult(new DeregisterResponse());
    }

    /// <summary>
    /// Authorization reads the ServiceEntries and WorkloadEntries: without a valid folder (an invalid one at start) every
    /// workload would pass unchecked, so Register and Renew wait for one.
    /// </summary>
    private void RequireValidConfig()
    {
        if (!store.HasValidConfig)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, "control plane not ready: no valid config folder loaded yet (see /healthz/ready); retry later"));
        }
    }

    private static RpcException UnknownLease(string leaseId) =>
        new(new Status(StatusCode.NotFound, $"lease '{leaseId}' is unknown or expired; register again"));

    /// <summary>The authenticated caller on the TLS port; null on the plaintext port (when allowed there).</summary>
    private WorkloadIdentity? Caller(ServerCallContext context)
    {
        if (SecureTransport.IsSecure(context))
        {
            // The workload certificate only, as ADS: a bootstrap token is spent by the CA alone, so accepted here a
            // single-use token would register, renew and deregister until it expires.
            var outcome = new ClientCertificateAuthenticator(ca).Authenticate(context);
            return outcome.Identity ?? throw new RpcException(new Status(StatusCode.Unauthenticated,
                "the workload registry on the secure port requires the workload certificate as the TLS client certificate " +
                (outcome.Failure is null
                    ? "and none was presented; a bootstrap token is not accepted here (it buys the certificate from the CA first)"
                    : "and refused the one presented: " + outcome.Failure)));
        }

        if (!options.PlaintextRegistration)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied,
                "registration on the plaintext port is disabled (ControlPlane:PlaintextRegistration=false); register over the TLS port (ControlPlane:SecureAddress) with a bootstrap token or the workload certificate"));
        }

        return null;
    }

    /// <summary>Only the lease's owner may renew or end it; a plaintext caller never touches a certified identity's lease.</summary>
    private void AuthorizeLease(WorkloadIdentity? caller, WorkloadLease lease, string action)
    {
        var owner = lease.Owner;
        if (caller is null)
        {
            if (owner.Certified)
            {
                throw new RpcException(new Status(StatusCode.PermissionDenied,
                    $"lease '{lease.Id}' belongs to {owner.Describe(options.TrustDomain)}, registered over the TLS port; a plaintext caller may not {action} it"));
            }

            return;
        }

        if (owner.Namespace == caller.Namespace && owner.ServiceAccount == caller.ServiceAccount)
        {
            if (!owner.Certified)
            {
                // A lease made over plaintext (or kept from a state file written before leases recorded it) proves nothing:
                // the caller registers again, which replaces it with a certified lease.
                throw new RpcException(new Status(StatusCode.NotFound,
                    $"lease '{lease.Id}' was made by a plaintext registration; register again over the TLS port"));
            }

            return;
        }

        throw new RpcException(new Status(StatusCode.PermissionDenied,
            $"caller {caller.SpiffeId} may not {action} lease '{lease.Id}', which belongs to {owner.Describe(options.TrustDomain)}"));
    }

    /// <summary>
    /// The ports of the workload's address it holds once registered: its own ports and the endpoint port every ServiceEntry
    /// selecting it gives it (a workload without ports serves the service's port).
    /// </summary>
    internal static ImmutableArray<uint> ClaimedPorts(ModelSnapshot snapshot, WorkloadInstance workload)
    {
        var ports = new SortedSet<uint>(workload.Ports.Values);
        foreach (var service in snapshot.Config.ServiceEntries)
        {
            var member = service.StaticEndpoints.Contains(workload)
                || (service.WorkloadSelector is not null && service.Namespace == workload.Namespace && HostNames.LabelsMatch(service.WorkloadSelector, workload.Labels));
            if (member)
            {
                foreach (var port in service.Ports)
                {
                    ports.Add(Xds.XdsTranslator.EndpointPort(port, workload));
                }
            }
        }

        return [.. ports];
    }

    /// <summary>
    /// A WorkloadEntry (or inline endpoint) declares who serves its address:ports: its serviceAccount, or without one the
    /// identities every service selecting it runs as (the identities its inbound listener is served to, see
    /// InboundListenerTranslator). A registration of one of those address:ports by another identity is refused.
    /// </summary>
    internal static void CheckDeclaredOwners(ModelSnapshot snapshot, WorkloadInstance workload, IReadOnlyCollection<uint> claimed, string trustDomain)
    {
        var caller = new WorkloadIdentity(trustDomain, workload.Namespace, workload.ServiceAccount).SpiffeId;
        var declared = snapshot.Config.WorkloadEntries.Concat(snapshot.Config.ServiceEntries.SelectMany(s => s.StaticEndpoints));
        foreach (var entry in declared)
        {
            if (!string.Equals(entry.Address, workload.Address, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            var owners = entry.ServiceAccount.Length > 0
                ? [new WorkloadIdentity(trustDomain, entry.Namespace, entry.ServiceAccount).SpiffeId]
                : StaticEntryOwners(snapshot, entry, trustDomain);
            if (owners.Contains(caller, StringComparer.Ordinal))
            {
                continue;
            }

            var shared = ClaimedPorts(snapshot, entry).Intersect(claimed).ToList();
            if (shared.Count > 0)
            {
                var described = new LeaseOwner(workload.Namespace, workload.ServiceAccount, workload.CertifiedIdentity).Describe(trustDomain);
                var holder = entry.ServiceAccount.Length > 0
                    ? $"{owners[0]} (WorkloadEntry {entry.Namespace}/{entry.Name} spec.serviceAccount)"
                    : $"{(owners.Length == 0 ? "no identity" : string.Join(" or ", owners))} (WorkloadEntry {entry.Namespace}/{entry.Name} has no spec.serviceAccount: " +
                      $"it belongs to the identities of the ServiceEntries selecting it{(owners.Length == 0 ? ", and none selects it or they disagree" : string.Empty)})";
                throw new RpcException(new Status(StatusCode.PermissionDenied,
                    $"address {string.Join(", ", shared.Select(p => $"{workload.Address}:{p.ToString(CultureInfo.InvariantCulture)}"))} is declared for {holder}; {described} may not register it"));
            }
        }
    }

    /// <summary>
    /// Who owns a static entry without a serviceAccount: the identities allowed by every ServiceEntry it belongs to (an
    /// inline endpoint, or selected by label in its namespace); none when nothing selects it or the services disagree.
    /// </summary>
    internal static string[] StaticEntryOwners(ModelSnapshot snapshot, WorkloadInstance entry, string trustDomain)
    {
        IEnumerable<string>? allowed = null;
        foreach (var service in snapshot.Config.ServiceEntries)
        {
            var member = service.StaticEndpoints.Contains(entry)
                || (service.WorkloadSelector is not null && service.Namespace == entry.Namespace && HostNames.LabelsMatch(service.WorkloadSelector, entry.Labels));
            if (member)
            {
                var identities = SpiffeId.AllowedIdentities(service, trustDomain);
                allowed = allowed is null ? identities : allowed.Intersect(identities, StringComparer.Ordinal);
            }
        }

        return [.. allowed ?? []];
    }

    /// <summary>
    /// The workload must be the caller, and every ServiceEntry selecting it must run as the caller's SPIFFE ID:
    /// spec.subjectAltNames when set, else the convention service account = ServiceEntry name.
    /// </summary>
    internal static void Authorize(WorkloadIdentity caller, WorkloadInstance workload, ModelSnapshot snapshot)
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

    internal static IEnumerable<string> MatchingHosts(ModelSnapshot snapshot, WorkloadInstance workload) =>
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

        // Each port is an inbound listener rebuilt in every snapshot, each label is matched by every selector: bounded, so
        // one registration cannot make every rebuild expensive.
        if (entry.Ports.Count > MaxPorts)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture, $"workload.ports has {entry.Ports.Count} entries; the limit is {MaxPorts} per registration"));
        }

        foreach (var (name, port) in entry.Ports)
        {
            if (string.IsNullOrEmpty(name) || port is < 1 or > 65535)
            {
                throw Invalid($"workload.ports['{name}'] = {port}: port names must be non-empty and ports 1-65535");
            }

            if (name.Length > MaxLabelNameLength)
            {
                throw Invalid(string.Create(CultureInfo.InvariantCulture, $"workload.ports['{name[..MaxLabelNameLength]}...'] name is {name.Length} characters; the limit is {MaxLabelNameLength}"));
            }
        }

        if (entry.Labels.Count == 0)
        {
            throw Invalid("workload.labels must contain at least one label (ServiceEntries select workloads by label)");
        }

        if (entry.Labels.Count > MaxLabels)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture, $"workload.labels has {entry.Labels.Count} entries; the limit is {MaxLabels} per registration"));
        }

        foreach (var (key, value) in entry.Labels)
        {
            CheckLabel(key, value);
        }

        if (!Mesh.Xds.Wire.LocalityNames.TryValidate(entry.Locality, out var localityReason))
        {
            throw Invalid($"workload.locality {localityReason}");
        }

        return new WorkloadInstance(
            ns, entry.Name, entry.Address,
            entry.Ports.ToImmutableSortedDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal),
            entry.Labels.ToImmutableSortedDictionary(l => l.Key, l => l.Value, StringComparer.Ordinal),
            entry.ServiceAccount, entry.Locality, entry.Weight, EndpointSources.Registration, LeaseId: null);
    }

    /// <summary>Kubernetes' label lengths: key = optional DNS-subdomain prefix (253) '/' name (63); value 63.</summary>
    private static void CheckLabel(string key, string value)
    {
        if (string.IsNullOrEmpty(key))
        {
            throw Invalid("workload.labels keys must be non-empty");
        }

        var slash = key.IndexOf('/', StringComparison.Ordinal);
        var prefix = slash < 0 ? string.Empty : key[..slash];
        var name = slash < 0 ? key : key[(slash + 1)..];
        var shown = key.Length > 80 ? key[..80] + "..." : key;
        if (name.Length is 0 or > MaxLabelNameLength)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture, $"workload.labels['{shown}']: the key's name part is {name.Length} characters; it must be 1-{MaxLabelNameLength} (as Kubernetes label keys)"));
        }

        if (prefix.Length > MaxLabelPrefixLength)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture, $"workload.labels['{shown}']: the key's prefix is {prefix.Length} characters; the limit is {MaxLabelPrefixLength} (as Kubernetes label keys)"));
        }

        if (value.Length > MaxLabelValueLength)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture, $"workload.labels['{shown}'] value is {value.Length} characters; the limit is {MaxLabelValueLength} (as Kubernetes label values)"));
        }
    }

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}
