using System.Text.Json.Serialization;

namespace Mesh.Samples;

/// <summary>Counts what one demo instance served; the demo launcher reads it from <c>/_stats</c>.</summary>
public sealed class DemoStats
{
    private long _requests;
    private long _errors;
    private long _denied;

    public DemoStats(string service, string instance)
    {
        Service = service;
        Instance = instance;
    }

    public string Service { get; }

    public string Instance { get; }

    public long Requests => Interlocked.Read(ref _requests);

    public long Errors => Interlocked.Read(ref _errors);

    public void RecordRequest() => Interlocked.Increment(ref _requests);

    public long Denied => Interlocked.Read(ref _denied);

    public void RecordError() => Interlocked.Increment(ref _errors);

    /// <summary>Counts a call this instance made that the callee's AuthorizationPolicy refused (403).</summary>
    public void RecordDenied() => Interlocked.Increment(ref _denied);

    public StatsSnapshot Snapshot() => new(Service, Instance, Requests, Errors, Denied);
}

public sealed record StatsSnapshot(
    [property: JsonPropertyName("service")] string Service,
    [property: JsonPropertyName("instance")] string Instance,
    [property: JsonPropertyName("requests")] long Requests,
    [property: JsonPropertyName("errors")] long Errors,
    [property: JsonPropertyName("denied")] long Denied);
