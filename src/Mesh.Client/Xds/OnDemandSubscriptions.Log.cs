using Microsoft.Extensions.Logging;

namespace Mesh.Client.Xds;

internal sealed partial class OnDemandSubscriptions
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Debug, "Subscribing on demand to mesh service {Listener}.", EventName = "OnDemandSubscribe")]
        public static partial void Subscribing(ILogger logger, string listener);

        [LoggerMessage(2, LogLevel.Information, "Mesh service {Listener} does not exist on the control plane; unsubscribed, and calls to it are not looked up again for 5 s.", EventName = "OnDemandAbsent")]
        public static partial void Absent(ILogger logger, string listener);

        [LoggerMessage(3, LogLevel.Warning, "No configuration for mesh service {Listener} arrived within {Timeout} (Mesh:ControlPlane:SubscriptionTimeout); calls to it go on as to an unknown host.", EventName = "OnDemandTimeout")]
        public static partial void TimedOut(ILogger logger, string listener, TimeSpan timeout);

        [LoggerMessage(4, LogLevel.Information, "Mesh service {Listener} was not called for Mesh:ControlPlane:UnusedServiceTimeout: unsubscribed.", EventName = "OnDemandUnused")]
        public static partial void Unsubscribed(ILogger logger, string listener);

        [LoggerMessage(5, LogLevel.Warning, "Mesh service {Listener} not subscribed: {Max} hosts are already subscribed on demand (Mesh:ControlPlane:MaxOnDemandServices).", EventName = "OnDemandLimit")]
        public static partial void LimitReached(ILogger logger, string listener, int max);
    }
}
