using Microsoft.Extensions.Logging;

namespace Mesh.Client.Security;

internal sealed partial class WorkloadIdentityService
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Workload certificate for {SpiffeId} issued (serial {Serial}, expires {NotAfter:O}); renewal at {RenewAt:O}.", EventName = "Issued")]
        public static partial void Issued(ILogger logger, string spiffeId, string serial, DateTimeOffset notAfter, DateTimeOffset renewAt);

        [LoggerMessage(2, LogLevel.Warning, "Workload certificate request to {ControlPlane} failed: {Error}. Keeping the current certificate: {HasCurrent}; retrying in {Delay}.", EventName = "IssueFailed")]
        public static partial void IssueFailed(ILogger logger, Uri controlPlane, string error, bool hasCurrent, TimeSpan delay, Exception exception);

        [LoggerMessage(3, LogLevel.Information, "Trust bundle updated: {Count} root(s) from {Source}.", EventName = "BundleUpdated")]
        public static partial void BundleUpdated(ILogger logger, int count, string source);

        [LoggerMessage(4, LogLevel.Warning, "Trust bundle refresh from {ControlPlane} failed: {Error}; the current bundle stays.", EventName = "BundleFailed")]
        public static partial void BundleFailed(ILogger logger, Uri controlPlane, string error, Exception exception);

        [LoggerMessage(5, LogLevel.Warning, "The CA certified {SpiffeId}, not {Expected} from Mesh:Namespace and Mesh:ServiceAccount; the control plane's identity wins.", EventName = "UnexpectedIdentity")]
        public static partial void UnexpectedIdentity(ILogger logger, string spiffeId, string expected);

        [LoggerMessage(6, LogLevel.Information, "Resuming with the workload certificate for {SpiffeId} from Mesh:Identity:CredentialFile {Path} (expires {NotAfter:O}); renewing with it, no bootstrap token needed.", EventName = "CredentialFileLoaded")]
        public static partial void CredentialFileLoaded(ILogger logger, string path, string spiffeId, DateTimeOffset notAfter);

        [LoggerMessage(7, LogLevel.Warning, "Mesh:Identity:CredentialFile {Path} is not used: {Reason}. The first certificate is requested with the bootstrap token.", EventName = "CredentialFileUnusable")]
        public static partial void CredentialFileUnusable(ILogger logger, string path, string reason);

        [LoggerMessage(8, LogLevel.Warning, "Could not write Mesh:Identity:CredentialFile {Path}: {Error}. The certificate is in use; a restart will need the bootstrap token.", EventName = "CredentialFileWriteFailed")]
        public static partial void CredentialFileWriteFailed(ILogger logger, string path, string error, Exception exception);

        [LoggerMessage(9, LogLevel.Warning, "The CA refused the current certificate {SpiffeId} as a credential; the next request authenticates with the bootstrap token.", EventName = "CertificateRefused")]
        public static partial void CertificateRefused(ILogger logger, string spiffeId);
    }
}
