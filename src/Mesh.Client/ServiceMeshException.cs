namespace Mesh.Client;

/// <summary>A call to a mesh service could not be sent. <see cref="Service"/> names the destination.</summary>
public class ServiceMeshException : HttpRequestException
{
    public ServiceMeshException()
    {
        Service = string.Empty;
    }

    public ServiceMeshException(string message)
        : base(message)
    {
        Service = string.Empty;
    }

    public ServiceMeshException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Service = string.Empty;
    }

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
    public MeshNotSyncedException()
    {
    }

    public MeshNotSyncedException(string message)
        : base(message)
    {
    }

    public MeshNotSyncedException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    public MeshNotSyncedException(string service, string controlPlane)
        : base(service, $"Cannot call '{service}': the service mesh is not yet synced with the control plane at {controlPlane}. Check that the control plane is running and Mesh:ControlPlane:Address is right; readiness stays unhealthy until the first configuration arrives.")
    {
    }
}

/// <summary>The service is known to the mesh but has no endpoint that could take the request.</summary>
public sealed class NoHealthyEndpointException : ServiceMeshException
{
    public NoHealthyEndpointException()
    {
    }

    public NoHealthyEndpointException(string message)
        : base(message)
    {
    }

    public NoHealthyEndpointException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    public NoHealthyEndpointException(string service, string cluster, int endpointCount)
        : base(service, $"Mesh service '{service}' has no healthy endpoint (cluster {cluster}, {endpointCount} endpoint(s) known). Start an instance of it or check its registrations in the control plane's /debug/config_dump.")
    {
    }
}

/// <summary>The service is known but none of its routes matches the request.</summary>
public sealed class NoRouteException : ServiceMeshException
{
    public NoRouteException()
    {
    }

    public NoRouteException(string message)
        : base(message)
    {
    }

    public NoRouteException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    public NoRouteException(string service, string path)
        : base(service, $"Mesh service '{service}' has no route matching '{path}'.")
    {
    }
}

/// <summary>
/// The destination service's circuit is open: too many recent calls to it failed, so calls are rejected without being
/// sent until the break duration has passed and a trial call succeeds (<c>Mesh:Resilience:CircuitBreaker*</c>).
/// </summary>
public sealed class CircuitOpenException : ServiceMeshException
{
    public CircuitOpenException()
    {
    }

    public CircuitOpenException(string message)
        : base(message)
    {
    }

    public CircuitOpenException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    public CircuitOpenException(string service, string serviceHost, TimeSpan breakDuration)
        : base(service, string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"Cannot call '{service}': the circuit of mesh service {serviceHost} is open after too many failed calls; calls are rejected for {breakDuration.TotalSeconds:0.###} s after it opened, then one trial call decides (Mesh:Resilience:CircuitBreaker*)."))
    {
    }
}
