using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Telemetry;

namespace Mesh.ControlPlane.Registry;

/// <summary>
/// A registration held by a lease. <paramref name="ClaimedPorts"/> are the ports of <see cref="WorkloadInstance.Address"/>
/// the lease holds (the workload's ports and the endpoint ports services give it): no other identity may register them.
/// </summary>
internal sealed record WorkloadLease(string Id, WorkloadInstance Workload, TimeSpan Ttl, DateTimeOffset ExpiresAt, ImmutableArray<uint> ClaimedPorts)
{
    /// <summary>Who holds the lease: the certified identity, or the claim of a plaintext registration.</summary>
    public LeaseOwner Owner => LeaseOwner.Of(Workload);
}

/// <summary>The identity a lease belongs to. A plaintext registration's service account is only a claim, never equal to a certified identity.</summary>
internal sealed record LeaseOwner(string Namespace, string ServiceAccount, bool Certified)
{
    public static LeaseOwner Of(WorkloadInstance workload)
    {
        ArgumentNullException.ThrowIfNull(workload);
        return new(workload.Namespace, workload.ServiceAccount, workload.CertifiedIdentity);
    }

    public string Describe(string trustDomain) => Certified
        ? new WorkloadIdentity(trustDomain, Namespace, ServiceAccount).SpiffeId
        : $"an unauthenticated plaintext registration claiming namespace '{Namespace}' service account '{ServiceAccount}'";
}

/// <summary>Why the registry refused a registration.</summary>
internal enum LeaseRefusal
{
    /// <summary>Another identity holds one of the address:ports.</summary>
    HeldByAnotherIdentity,

    /// <summary>The identity already holds ControlPlane:MaxLeasesPerIdentity leases.</summary>
    LimitReached,
}

internal sealed class LeaseRefusedException(LeaseRefusal reason, string message) : Exception(message)
{
    public LeaseRefusal Reason { get; } = reason;
}

/// <summary>
/// Runtime WorkloadEntry registrations held by leases. Changes in membership raise
/// <see cref="Changed"/> and are persisted to StateDirectory/registrations.json.
/// </summary>
internal sealed partial class WorkloadLeaseRegistry
{
    public static readonly TimeSpan MinTtl = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxTtl = TimeSpan.FromMinutes(5);

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    private readonly Lock _gate = new();

    // Serializes persisting and announcing: each pass reads the state as it is then, so the last pass writes the newest state
    // (concurrent passes would otherwise race on the temp file and could publish an older list after a newer one).
    private readonly Lock _publishGate = new();
    private readonly Dictionary<string, WorkloadLease> _byId = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _idByKey = new(StringComparer.Ordinal);
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<WorkloadLeaseRegistry> _logger;
    private readonly ControlPlaneMetrics? _metrics;

    public WorkloadLeaseRegistry(ControlPlaneOptions options, TimeProvider time, ILogger<WorkloadLeaseRegistry> logger, ControlPlaneMetrics? metrics = null)
    {
        _options = options;
        _time = time;
        _logger = logger;
        _metrics = metrics;
        metrics?.ObserveLeases(() =>
        {
            lock (_gate)
            {
                return _byId.Count;
            }
        });
    }

    public event Action? Changed;

    public string StateFile => Path.Combine(Path.GetFullPath(_options.StateDirectory), "registrations.json");

    public static string IdentityKey(WorkloadInstance w) =>
        string.Join('|',
            w.Namespace,
            w.Address,
            string.Join(',', w.Ports.Select(p => $"{p.Key}={p.Value.ToString(CultureInfo.InvariantCulture)}")),
            string.Join(',', w.Labels.Select(l => $"{l.Key}={l.Value}")));

    public TimeSpan ClampTtl(TimeSpan? requested) =>
        requested is null || requested <= TimeSpan.Zero
            ? _options.LeaseTtl
            : TimeSpan.FromTicks(Math.Clamp(requested.Value.Ticks, MinTtl.Ticks, MaxTtl.Ticks));

    /// <summary>
    /// Creates or refreshes the lease for the workload's key; returns the (stable) lease. Refused when another identity
    /// holds one of the address:ports (<paramref name="claimedPorts"/>, or the same key), or when the owner holds
    /// ControlPlane:MaxLeasesPerIdentity leases. A certified registration replaces plaintext leases on its address:ports:
    /// a claim nobody proved never keeps a certified workload out.
    /// </summary>
    public WorkloadLease Register(WorkloadInstance workload, TimeSpan? requestedTtl, IEnumerable<uint>? claimedPorts = null)
    {
        ArgumentNullException.ThrowIfNull(workload);
        var ttl = ClampTtl(requestedTtl);
        var key = IdentityKey(workload);
        var owner = LeaseOwner.Of(workload);
        ImmutableArray<uint> ports = [.. (claimedPorts ?? workload.Ports.Values).Concat(workload.Ports.Values).Distinct().Order()];
        WorkloadLease lease;
        bool membershipChanged;
        List<WorkloadLease> replaced = [];
        lock (_gate)
        {
            _idByKey.TryGetValue(key, out var existing);
            foreach (var held in _byId.Values)
            {
                if (held.Owner == owner || !Overlaps(held, workload.Address, ports, held.Id == existing))
                {
                    continue;
                }

                if (owner.Certified && !held.Owner.Certified)
                {
                    replaced.Add(held);
                    continue;
                }

                var shared = held.ClaimedPorts.Intersect(ports).Order().Select(p => $"{workload.Address}:{p.ToString(CultureInfo.InvariantCulture)}").ToList();
                throw new LeaseRefusedException(LeaseRefusal.HeldByAnotherIdentity,
                    $"address {(shared.Count > 0 ? string.Join(", ", shared) : workload.Address)} is held by {held.Owner.Describe(_options.TrustDomain)} (lease {held.Id}); " +
                    $"{owner.Describe(_options.TrustDomain)} may not register it. An address:port belongs to one identity until its lease ends");
            }

            foreach (var old in replaced)
            {
                _byId.Remove(old.Id);
                _idByKey.Remove(IdentityKey(old.Workload));
            }

            if (existing is not null && replaced.Any(r => r.Id == existing))
            {
                existing = null;
            }

            if (existing is null)
            {
                // A plaintext caller's service account is only a claim it can vary at will: all plaintext leases share one cap.
                var count = owner.Certified
                    ? _byId.Values.Count(l => l.Owner == owner)
                    : _byId.Values.Count(l => !l.Owner.Certified);
                if (count >= _options.MaxLeasesPerIdentity)
                {
                    throw new LeaseRefusedException(LeaseRefusal.LimitReached,
                        $"{(owner.Certified ? owner.Describe(_options.TrustDomain) : "plaintext registrations (all unauthenticated callers together)")} already hold{(owner.Certified ? "s" : string.Empty)} {count.ToString(CultureInfo.InvariantCulture)} leases, the limit ControlPlane:{nameof(ControlPlaneOptions.MaxLeasesPerIdentity)}={_options.MaxLeasesPerIdentity.ToString(CultureInfo.InvariantCulture)}; " +
                        "deregister instances that stopped, or raise the limit");
                }
            }

            var id = existing ?? Guid.NewGuid().ToString("N");
            var stored = workload with { Source = EndpointSources.Registration, LeaseId = id, Name = string.IsNullOrEmpty(workload.Name) ? $"registered-{id[..8]}" : workload.Name };
            membershipChanged = existing is null || replaced.Count > 0 || !SameDetails(_byId[id].Workload, stored) || !_byId[id].ClaimedPorts.SequenceEqual(ports);
            lease = new WorkloadLease(id, stored, ttl, _time.GetUtcNow() + ttl, ports);
            _byId[id] = lease;
            _idByKey[key] = id;
        }

        foreach (var old in replaced)
        {
            LogReplaced(_logger, old.Id, old.Owner.Describe(_options.TrustDomain), workload.Address, owner.Describe(_options.TrustDomain));
        }

        LogRegistered(_logger, lease.Id, workload.Namespace, workload.Address, ttl);
        _metrics?.Registered();
        if (membershipChanged)
        {
            OnChanged();
        }

        return lease;
    }

    /// <summary>Whether <paramref name="held"/> holds one of <paramref name="ports"/> of <paramref name="address"/> (or is the same key).</summary>
    private static bool Overlaps(WorkloadLease held, string address, ImmutableArray<uint> ports, bool sameKey) =>
        sameKey || (string.Equals(held.Workload.Address, address, StringComparison.OrdinalIgnoreCase) && held.ClaimedPorts.Intersect(ports).Any());

    private static bool SameDetails(WorkloadInstance a, WorkloadInstance b) =>
        a.Name == b.Name && a.ServiceAccount == b.ServiceAccount && a.Locality == b.Locality && a.Weight == b.Weight && a.CertifiedIdentity == b.CertifiedIdentity;

    /// <summary>Extends the lease; null when it is unknown or already expired.</summary>
    public WorkloadLease? Renew(string leaseId)
    {
        lock (_gate)
        {
            if (!_byId.TryGetValue(leaseId, out var lease) || lease.ExpiresAt <= _time.GetUtcNow())
            {
                return null;
            }

            lease = lease with { ExpiresAt = _time.GetUtcNow() + lease.Ttl };
            _byId[leaseId] = lease;
            _metrics?.Renewed();
            return lease;
        }
    }

    public bool Deregister(string leaseId)
    {
        lock (_gate)
        {
            if (!_byId.Remove(leaseId, out var lease))
            {
                return false;
            }

            _idByKey.Remove(IdentityKey(lease.Workload));
        }

        LogDeregistered(_logger, leaseId);
        _metrics?.Deregistered();
        OnChanged();
        return true;
    }

    /// <summary>
    /// Keeps every lease alive for at least one more TTL from now, without persisting: used while renewals are refused
    /// (no valid config), so a lease expires only a full TTL after renewals are possible again.
    /// </summary>
    public void HoldAll()
    {
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            foreach (var lease in _byId.Values.ToList())
            {
                if (lease.ExpiresAt < now + lease.Ttl)
                {
                    _byId[lease.Id] = lease with { ExpiresAt = now + lease.Ttl };
                }
            }
        }
    }

    /// <summary>Removes every lease whose deadline passed; returns how many were removed.</summary>
    public int RemoveExpired()
    {
        var now = _time.GetUtcNow();
        List<WorkloadLease> expired;
        lock (_gate)
        {
            expired = [.. _byId.Values.Where(l => l.ExpiresAt <= now)];
            foreach (var lease in expired)
            {
                _byId.Remove(lease.Id);
                _idByKey.Remove(IdentityKey(lease.Workload));
            }
        }

        foreach (var lease in expired)
        {
            LogExpired(_logger, lease.Id, lease.Workload.Namespace, lease.Workload.Address);
        }

        if (expired.Count > 0)
        {
            _metrics?.LeasesExpired(expired.Count);
            OnChanged();
        }

        return expired.Count;
    }

    public ImmutableArray<WorkloadLease> Leases()
    {
        lock (_gate)
        {
            return [.. _byId.Values.OrderBy(l => l.Id, StringComparer.Ordinal)];
        }
    }

    public ImmutableArray<WorkloadInstance> Workloads() => [.. Leases().Select(l => l.Workload)];

    public WorkloadLease? Find(string leaseId)
    {
        lock (_gate)
        {
            return _byId.GetValueOrDefault(leaseId);
        }
    }

    /// <summary>Loads persisted registrations; each gets a fresh deadline of now + LeaseTtl.</summary>
    public void LoadState()
    {
        if (!File.Exists(StateFile))
        {
            return;
        }

        try
        {
            var records = JsonSerializer.Deserialize<List<PersistedLease?>>(File.ReadAllText(StateFile), JsonOptions) ?? [];
            var now = _time.GetUtcNow();
            var loaded = 0;
            lock (_gate)
            {
                for (var index = 0; index < records.Count; index++)
                {
                    // A hand-edited or merge-damaged entry costs that entry only: its workload registers again at its next renewal.
                    var r = records[index];
                    if (!IsComplete(r, out var missing))
                    {
                        LogStateEntryIgnored(_logger, StateFile, index, missing);
                        continue;
                    }

                    var workload = new WorkloadInstance(
                        r.Namespace, r.Name, r.Address,
                        (r.Ports ?? []).ToImmutableSortedDictionary(StringComparer.Ordinal),
                        (r.Labels ?? []).ToImmutableSortedDictionary(StringComparer.Ordinal),
                        r.ServiceAccount ?? string.Empty, r.Locality ?? string.Empty, r.Weight,
                        EndpointSources.Registration, r.LeaseId);
                    workload = workload with { CertifiedIdentity = r.Certified };
                    var ttl = ClampTtl(TimeSpan.FromMilliseconds(r.TtlMilliseconds));
                    ImmutableArray<uint> claimed = [.. (r.ClaimedPorts ?? []).Concat(workload.Ports.Values).Distinct().Order()];
                    _byId[r.LeaseId] = new WorkloadLease(r.LeaseId, workload, ttl, now + _options.LeaseTtl, claimed);
                    _idByKey[IdentityKey(workload)] = r.LeaseId;
                    loaded++;
                }
            }

            LogStateLoaded(_logger, loaded, StateFile);
        }
        catch (Exception ex) when (ex is IOException or JsonException or UnauthorizedAccessException)
        {
            LogStateError(_logger, StateFile, ex);
        }

        Changed?.Invoke();
    }

    /// <summary>Whether a persisted entry has every field a lease needs; if not, <paramref name="missing"/> names the first it lacks.</summary>
    private static bool IsComplete([NotNullWhen(true)] PersistedLease? r, out string missing)
    {
        missing = r is null ? "the entry is null"
            : string.IsNullOrEmpty(r.LeaseId) ? "leaseId is required"
            : string.IsNullOrEmpty(r.Namespace) ? "namespace is required"
            : string.IsNullOrEmpty(r.Name) ? "name is required"
            : string.IsNullOrEmpty(r.Address) ? "address is required"
            : string.Empty;
        return missing.Length == 0;
    }

    private void OnChanged()
    {
        lock (_publishGate)
        {
            Persist();
            Changed?.Invoke();
        }
    }

    private void Persist()
    {
        var records = Leases().Select(l => new PersistedLease(
            l.Id, (long)l.Ttl.TotalMilliseconds, l.Workload.Namespace, l.Workload.Name, l.Workload.Address,
            new Dictionary<string, uint>(l.Workload.Ports), new Dictionary<string, string>(l.Workload.Labels),
            l.Workload.ServiceAccount, l.Workload.Locality, l.Workload.Weight)
        {
            Certified = l.Workload.CertifiedIdentity,
            ClaimedPorts = [.. l.ClaimedPorts],
        }).ToList();
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(StateFile)!);
            // Write-then-rename so a crash never leaves a half-written state file.
            var temp = StateFile + ".tmp";
            File.WriteAllText(temp, JsonSerializer.Serialize(records, JsonOptions));
            File.Move(temp, StateFile, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogStateError(_logger, StateFile, ex);
        }
    }

    internal sealed record PersistedLease(
        string LeaseId,
        long TtlMilliseconds,
        string Namespace,
        string Name,
        string Address,
        Dictionary<string, uint>? Ports,
        Dictionary<string, string>? Labels,
        string? ServiceAccount,
        string? Locality,
        uint Weight)
    {
        /// <summary>Registered by a certified identity (files written before this field read as plaintext registrations).</summary>
        public bool Certified { get; init; }

        public List<uint>? ClaimedPorts { get; init; }
    }
}
