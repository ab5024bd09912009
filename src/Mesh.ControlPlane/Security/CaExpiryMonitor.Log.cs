namespace Mesh.ControlPlane.Security;

internal sealed partial class CaExpiryMonitor
{
    [LoggerMessage(EventId = 1, EventName = "CaCertificateExpiring", Level = LogLevel.Warning,
        Message = "The CA's {Certificate} '{Subject}' expires at {NotAfter:O}, in {DaysLeft:F1} days (within ControlPlane:Ca:ExpiryWarningWindow {Window}): rotate it (ControlPlane:Ca:CertificateFile, KeyFile, ChainFile; add the new root to ExtraRootsFile first) before workloads can no longer get certificates")]
    private static partial void LogExpiring(ILogger logger, string certificate, string subject, DateTimeOffset notAfter, double daysLeft, string window);
}
