using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Registry;

internal sealed record WorkloadLease(string Id, WorkloadInstance Workload, TimeSpan Ttl, DateTimeOffset ExpiresAt);

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
    private readonly Dictionary<string, WorkloadLease> _byId = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _idByKey = new(StringComparer.Ordinal);
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<WorkloadLeaseRegistry> _logger;

    public WorkloadLeaseRegistry(ControlPlaneOptions options, TimeProvider time, ILogger<WorkloadLeaseRegistry> logger)
    {
        _options = options;
        _time = time;
        _logger = logger;
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

    /// <summary>Creates or refreshes the lease for the workload's identity; returns the (stable) lease.</summary>
    public WorkloadLease Register(WorkloadInstance workload, TimeSpan? requestedTtl)
    {
        ArgumentNullException.ThrowIfNull(workload);
        var ttl = ClampTtl(requestedTtl);
        var key = IdentityKey(workload);
        WorkloadLease lease;
        bool membershipChanged;
        lock (_gate)
        {
            var id = _idByKey.TryGetValue(key, out var existing) ? existing : Guid.NewGuid().ToString("N");
            var stored = workload with { Source = EndpointSources.Registration, LeaseId = id, Name = string.IsNullOrEmpty(workload.Name) ? $"registered-{id[..8]}" : workload.Name };
            membershipChanged = existing is null || !SameDetails(_byId[id].Workload, stored);
            lease = new WorkloadLease(id, stored, ttl, _time.GetUtcNow() + ttl);
            _byId[id] = lease;
            _idByKey[key] = id;
        }

        LogRegistered(_logger, lease.Id, workload.Namespace, workload.Address, ttl);
        if (membershipChanged)
        {
            OnChanged();
        }

        return lease;
    }

    private static bool SameDetails(WorkloadInstance a, WorkloadInstance b) =>
        a.Name == b.Name && a.ServiceAccount == b.ServiceAccount && a.Locality == b.Locality && a.Weight == b.Weight;

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
        OnChanged();
        return true;
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
            var records = JsonSerializer.Deserialize<List<PersistedLease>>(File.ReadAllText(StateFile), JsonOptions) ?? [];
            var now = _time.GetUtcNow();
            lock (_gate)
            {
                foreach (var r in records)
                {
                    var workload = new WorkloadInstance(
                        r.Namespace, r.Name, r.Address,
                        (r.Ports ?? []).ToImmutableSortedDictionary(StringComparer.Ordinal),
                        (r.Labels ?? []).ToImmutableSortedDictionary(StringComparer.Ordinal),
                        r.ServiceAccount ?? string.Empty, r.Locality ?? string.Empty, r.Weight,
                        EndpointSources.Registration, r.LeaseId);
                    var ttl = ClampTtl(TimeSpan.FromMilliseconds(r.TtlMilliseconds));
                    _byId[r.LeaseId] = new WorkloadLease(r.LeaseId, workload, ttl, now + _options.LeaseTtl);
                    _idByKey[IdentityKey(workload)] = r.LeaseId;
                }
            }

            LogStateLoaded(_logger, records.Count, StateFile);
        }
        catch (Exception ex) when (ex is IOException or JsonException or UnauthorizedAccessException)
        {
            LogStateError(_logger, StateFile, ex);
        }

        Changed?.Invoke();
    }

    private void OnChanged()
    {
        Persist();
        Changed?.Invoke();
    }

    private void Persist()
    {
        var records = Leases().Select(l => new PersistedLease(
            l.Id, (long)l.Ttl.TotalMilliseconds, l.Workload.Namespace, l.Workload.Name, l.Workload.Address,
            new Dictionary<string, uint>(l.Workload.Ports), new Dictionary<string, string>(l.Workload.Labels),
            l.Workload.ServiceAccount, l.Workload.Locality, l.Workload.Weight)).ToList();
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
        uint Weight);

    [LoggerMessage(Level = LogLevel.Information, Message = "Registered lease {LeaseId} for {Namespace}/{Address} (ttl {Ttl})")]
    private static partial void LogRegistered(ILogger logger, string leaseId, string @namespace, string address, TimeSpan ttl);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deregistered lease {LeaseId}")]
    private static partial void LogDeregistered(ILogger logger, string leaseId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Lease {LeaseId} for {Namespace}/{Address} expired")]
    private static partial void LogExpired(ILogger logger, string leaseId, string @namespace, string address);

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Count} registrations from {File}")]
    private static partial void LogStateLoaded(ILogger logger, int count, string file);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot read or write registration state {File}")]
    private static partial void LogStateError(ILogger logger, string file, Exception exception);
}
