using Microsoft.Extensions.Logging;

namespace Mesh.Client.Registration;

internal sealed partial class WorkloadRegistrationService
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Registered with the control plane at {ControlPlane} as an instance of {Service} at {Address} ({Ports}); lease {LeaseId}, TTL {Ttl}.", EventName = "Registered")]
        public static partial void Registered(ILogger logger, string service, Uri controlPlane, string address, string ports, string leaseId, TimeSpan ttl);

        [LoggerMessage(2, LogLevel.Warning, "Registration of {Service} with the control plane at {Address} failed; retrying in {Delay}.", EventName = "RegistrationFailed")]
        public static partial void RegistrationFailed(ILogger logger, string service, Uri address, TimeSpan delay, Exception exception);

        [LoggerMessage(3, LogLevel.Warning, "The control plane no longer knows lease {LeaseId}; registering again.", EventName = "LeaseLost")]
        public static partial void LeaseLost(ILogger logger, string leaseId);

        [LoggerMessage(4, LogLevel.Information, "Deregistered {Service} (lease {LeaseId}).", EventName = "Deregistered")]
        public static partial void Deregistered(ILogger logger, string service, string leaseId);

        [LoggerMessage(5, LogLevel.Warning, "Deregistering lease {LeaseId} failed; the control plane will drop it when the lease expires.", EventName = "DeregisterFailed")]
        public static partial void DeregisterFailed(ILogger logger, string leaseId, Exception exception);

        [LoggerMessage(7, LogLevel.Error, "The control plane refused to register this workload (service account {ServiceAccount}) as an instance of {Service} ({StatusCode}: {Detail}). It takes no traffic; retrying every {Delay} in case the configuration changes.", EventName = "RegistrationRefused")]
        public static partial void RegistrationRefused(ILogger logger, string service, string serviceAccount, global::Grpc.Core.StatusCode statusCode, string detail, TimeSpan delay);

        [LoggerMessage(6, LogLevel.Information, "Mesh:Service is {Service} but the app has no server addresses (not a web app?); self-registration skipped.", EventName = "NoServer")]
        public static partial void NoServer(ILogger logger, string service);

        [LoggerMessage(9, LogLevel.Information, "Not registering (Mesh:Registration:Enabled=false): {Service} enforces the inbound policy the control plane sends for {Listeners}, the address:ports it must know as this workload's (a Pod's EndpointSlice address); until then those ports answer 503.", EventName = "InboundWithoutRegistration")]
        public static partial void InboundWithoutRegistration(ILogger logger, string service, string listeners);

        [LoggerMessage(10, LogLevel.Warning, "Not registering (Mesh:Registration:Enabled=false) and Mesh:Registration:Address is unset: {Service} binds every address, so it asks for the inbound policy of {Listeners}, which no EndpointSlice lists; its mesh ports answer 503 until that policy arrives. Set Mesh:Registration:Address to the address the control plane knows this workload by (on Kubernetes the Pod IP, from the downward API's status.podIP).", EventName = "InboundAddressGuessed")]
        public static partial void InboundAddressGuessed(ILogger logger, string service, string listeners);

        [LoggerMessage(8, LogLevel.Warning, "This {Service} instance is not ready any more (its readiness failed): leaving the mesh, so that callers go to other endpoints, until it is ready again.", EventName = "LeavingNotReady")]
        public static partial void LeavingNotReady(ILogger logger, string service);
    }
}
