namespace Mesh.Client.Registration;

/// <summary>
/// When a workload may be an endpoint of its service (after its identity, before its first lease): a host registers one
/// when its callers must not be sent to it, as Kubernetes keeps a Pod out of its Service's endpoints while it is not
/// ready — before it first is, and again whenever its readiness fails. The sidecar follows its app.
/// </summary>
internal interface IWorkloadRegistrationGate
{
    /// <summary>Completes once the workload may take traffic; cancelled when the host stops.</summary>
    Task WaitUntilReadyAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Completes once the workload that was ready no longer may take traffic (its readiness failed as many times in a row as
    /// the host's threshold says); the registration then leaves the mesh until <see cref="WaitUntilReadyAsync"/> completes
    /// again. Cancelled when the host stops or the registration ends.
    /// </summary>
    Task WaitUntilNotReadyAsync(CancellationToken cancellationToken);
}
