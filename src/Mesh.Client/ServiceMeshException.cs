namespace Mesh.Client;

/// <summary>A call to a mesh service could not be sent. <see cref="Service"/> names the destination.</summary>
public class ServiceMeshException : HttpRequestException
{
    /// <summary>Initializes a new <see cref="ServiceMeshException"/> with a default message and no service.</summary>
    public ServiceMeshException()
    {
        Service = string.Empty;
    }

    /// <summary>Initializes a new <see cref="ServiceMeshException"/> with a message and no service.</summary>
    /// <param name="message">The error message.</param>
    public ServiceMeshException(string message)
        : base(message)
    {
        Service = string.Empty;
    }

    /// <summary>Initializes a new <see cref="ServiceMeshException"/> with a message, the exception that caused it, and no service.</summary>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The exception that caused this one, if any.</param>
    public ServiceMeshException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Service = string.Empty;
    }

    /// <summary>Initializes a new <see cref="ServiceMeshException"/> for a call to <paramref name="service"/>.</summary>
    /// <param name="service">The logical service the request was for, as the application wrote it.</param>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The exception that caused this one, if any.</param>
    public ServiceMeshException(string service, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        ArgumentNullException.ThrowIfNull(service);
        Service = service;
    }

    /// <summary>Gets the logical service the request was for, as the application wrote it.</summary>
    public string Service { get; }
}

/// <summary>The mesh has not received its first configuration from the control plane yet.</summary>
public sealed class MeshNotSyncedException : ServiceMeshException
{
    /// <summary>Initializes a new <see cref="MeshNotSyncedException"/> with a default message and no service.</summary>
    public MeshNotSyncedException()
    {
    }

    /// <summary>Initializes a new <see cref="MeshNotSyncedException"/> with a message and no service.</summary>
    /// <param name="message">The error message.</param>
    public MeshNotSyncedException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new <see cref="MeshNotSyncedException"/> with a message, the exception that caused it, and no service.</summary>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The exception that caused this one, if any.</param>
    public MeshNotSyncedException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Initializes a new <see cref="MeshNotSyncedException"/> whose message names the service and the control plane.</summary>
    /// <param name="service">The logical service the request was for.</param>
    /// <param name="controlPlane">The control plane address the client is waiting for (<c>Mesh:ControlPlane:Address</c>).</param>
    public MeshNotSyncedException(string service, string controlPlane)
        : this(service, controlPlane, null)
    {
    }

    // The inner IOException makes gRPC clients report UNAVAILABLE (Grpc.Net.Client maps any other exception to INTERNAL).
    internal MeshNotSyncedException(string service, string controlPlane, Exception? innerException)
        : base(service, $"Cannot call '{service}': the service mesh is not yet synced with the control plane at {controlPlane}. Check that the control plane is running and Mesh:ControlPlane:Address is right; readiness stays unhealthy until the first configuration arrives.", innerException)
    {
    }
}

/// <summary>The service is known to the mesh but has no endpoint that could take the request.</summary>
public sealed class NoHealthyEndpointException : ServiceMeshException
{
    /// <summary>Initializes a new <see cref="NoHealthyEndpointException"/> with a default message and no service.</summary>
    public NoHealthyEndpointException()
    {
    }

    /// <summary>Initializes a new <see cref="NoHealthyEndpointException"/> with a message and no service.</summary>
    /// <param name="message">The error message.</param>
    public NoHealthyEndpointException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new <see cref="NoHealthyEndpointException"/> with a message, the exception that caused it, and no service.</summary>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The exception that caused this one, if any.</param>
    public NoHealthyEndpointException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Initializes a new <see cref="NoHealthyEndpointException"/> whose message names the service and its cluster.</summary>
    /// <param name="service">The logical service the request was for.</param>
    /// <param name="cluster">The xDS cluster the route chose.</param>
    /// <param name="endpointCount">How many endpoints the cluster has, none of them able to take the request.</param>
    public NoHealthyEndpointException(string service, string cluster, int endpointCount)
        : this(service, cluster, endpointCount, null)
    {
    }

    internal NoHealthyEndpointException(string service, string cluster, int endpointCount, Exception? innerException)
        : base(service, $"Mesh service '{service}' has no healthy endpoint (cluster {cluster}, {endpointCount} endpoint(s) known). Start an instance of it or check its registrations in the control plane's /debug/config_dump.", innerException)
    {
    }
}

/// <summary>The service is known but none of its routes matches the request.</summary>
public sealed class NoRouteException : ServiceMeshException
{
    /// <summary>Initializes a new <see cref="NoRouteException"/> with a default message and no service.</summary>
    public NoRouteException()
    {
    }

    /// <summary>Initializes a new <see cref="NoRouteException"/> with a message and no service.</summary>
    /// <param name="message">The error message.</param>
    public NoRouteException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new <see cref="NoRouteException"/> with a message, the exception that caused it, and no service.</summary>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The exception that caused this one, if any.</param>
    public NoRouteException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Initializes a new <see cref="NoRouteException"/> whose message names the service and the request path.</summary>
    /// <param name="service">The logical service the request was for.</param>
    /// <param name="path">The request path no route matched.</param>
    public NoRouteException(string service, string path)
        : this(service, path, null)
    {
    }

    internal NoRouteException(string service, string path, Exception? innerException)
        : base(service, $"Mesh service '{service}' has no route matching '{path}'.", innerException)
    {
    }
}

/// <summary>
/// The destination service's circuit is open: too many recent calls to it failed, so calls are rejected without being
/// sent until the break duration has passed and a trial call succeeds (<c>Mesh:Resilience:CircuitBreaker*</c>).
/// </summary>
public sealed class CircuitOpenException : ServiceMeshException
{
    /// <summary>Initializes a new <see cref="CircuitOpenException"/> with a default message and no service.</summary>
    public CircuitOpenException()
    {
    }

    /// <summary>Initializes a new <see cref="CircuitOpenException"/> with a message and no service.</summary>
    /// <param name="message">The error message.</param>
    public CircuitOpenException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new <see cref="CircuitOpenException"/> with a message, the exception that caused it, and no service.</summary>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The exception that caused this one, if any.</param>
    public CircuitOpenException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Initializes a new <see cref="CircuitOpenException"/> whose message names the service and how long calls are rejected.</summary>
    /// <param name="service">The logical service the request was for.</param>
    /// <param name="serviceHost">The mesh host whose circuit is open.</param>
    /// <param name="breakDuration">How long calls are rejected after the circuit opened.</param>
    public CircuitOpenException(string service, string serviceHost, TimeSpan breakDuration)
        : base(service, string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"Cannot call '{service}': the circuit of mesh service {serviceHost} is open after too many failed calls; calls are rejected for {breakDuration.TotalSeconds:0.###} s after it opened, then one trial call decides (Mesh:Resilience:CircuitBreaker*)."))
    {
    }
}

/// <summary>
/// A limit of the destination cluster's connection pool was reached (Envoy's upstream overflow, <c>UO</c>): the
/// request or retry was rejected at once instead of queuing. The message names the service, the limit and its value
/// (DestinationRule <c>connectionPool</c>, or the retry budget).
/// </summary>
public sealed class UpstreamOverflowException : ServiceMeshException
{
    /// <summary>Initializes a new <see cref="UpstreamOverflowException"/> with a default message and no service.</summary>
    public UpstreamOverflowException()
    {
        Cluster = string.Empty;
        Limit = string.Empty;
    }

    /// <summary>Initializes a new <see cref="UpstreamOverflowException"/> with a message and no service.</summary>
    /// <param name="message">The error message.</param>
    public UpstreamOverflowException(string message)
        : base(message)
    {
        Cluster = string.Empty;
        Limit = string.Empty;
    }

    /// <summary>Initializes a new <see cref="UpstreamOverflowException"/> with a message, the exception that caused it, and no service.</summary>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The exception that caused this one, if any.</param>
    public UpstreamOverflowException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Cluster = string.Empty;
        Limit = string.Empty;
    }

    /// <summary>Initializes a new <see cref="UpstreamOverflowException"/> whose message names the service, the cluster and the limit reached.</summary>
    /// <param name="service">The logical service the request was for.</param>
    /// <param name="cluster">The xDS cluster whose limit was reached.</param>
    /// <param name="limit">The limit, as its xDS field and DestinationRule field.</param>
    /// <param name="value">The limit's value.</param>
    public UpstreamOverflowException(string service, string cluster, string limit, int value)
        : base(service, string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"Cannot call '{service}': cluster {cluster} already has {value} requests in flight, its {limit} limit; the request was rejected at once (upstream overflow, UO)."))
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(limit);
        Cluster = cluster;
        Limit = limit;
        Value = value;
    }

    /// <summary>Gets the xDS cluster whose limit was reached.</summary>
    public string Cluster { get; }

    /// <summary>Gets the limit that was reached.</summary>
    public string Limit { get; }

    /// <summary>Gets the limit's value.</summary>
    public int Value { get; }
}
