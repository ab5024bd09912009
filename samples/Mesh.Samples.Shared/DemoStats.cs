using System.Text.Json.Serialization;

namespace Mesh.Samples;

/// <summary>Counts what one demo instance served; the demo launcher reads it from <c>/_stats</c>.</summary>
public sealed class DemoStats
{
    private long _requests;
    private long _errors;

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

    public void RecordError() => Interlocked.Increment(ref _errors);

    public StatsSnapshot Snapshot() => new(Service, Instance, Requests, Errors);
}

public sealed record StatsSnapshot(
    [property: JsonPropertyName("service")] string Service,
    [property: JsonPropertyName("instance")] string Instance,
    [property: JsonPropertyName("requests")] long Requests,
    [property: JsonPropertyName("errors")] long Errors);
