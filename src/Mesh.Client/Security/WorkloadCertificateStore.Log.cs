using Microsoft.Extensions.Logging;

namespace Mesh.Client.Security;

internal sealed partial class WorkloadCertificateStore
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Error, "Cannot read Mesh:ControlPlane:RootCertificate {File}.", EventName = "RootUnreadable")]
        public static partial void RootUnreadable(ILogger logger, string file, Exception exception);
    }
}
