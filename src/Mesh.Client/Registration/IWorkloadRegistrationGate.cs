namespace Mesh.Client.Registration;

/// <summary>
/// What a workload waits for before it registers as an endpoint of its service (after its identity, before its first
/// lease): a host registers one when its callers must not be sent to it yet, as Kubernetes keeps a Pod out of its
/// Service's endpoints until it is ready. The sidecar waits for its app to answer.
/// </summary>
internal interface IWorkloadRegistrationGate
{
    /// <summary>Completes once the workload may take traffic; cancelled when the host stops.</summary>
    Task WaitUntilReadyAsync(CancellationToken cancellationToken);
}
