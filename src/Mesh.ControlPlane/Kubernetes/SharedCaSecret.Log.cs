using Microsoft.Extensions.Logging;

namespace Mesh.ControlPlane.Kubernetes;

internal sealed partial class SharedCaSecret
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Mesh root {Outcome} from Secret {Namespace}/{Secret} (this replica leads: {IsLeader}).", EventName = "SharedCaInstalled")]
        public static partial void Installed(ILogger logger, string outcome, string @namespace, string secret, bool isLeader);

        [LoggerMessage(2, LogLevel.Information, "Secret {Namespace}/{Secret} was created by another replica first; using theirs.", EventName = "SharedCaCreateRaceLost")]
        public static partial void LostCreateRace(ILogger logger, string @namespace, string secret);

        [LoggerMessage(3, LogLevel.Warning, "Reading Secret {Namespace}/{Secret} failed: {Error}; retrying.", EventName = "SharedCaReadFailed")]
        public static partial void ReadFailed(ILogger logger, string @namespace, string secret, string error);

        [LoggerMessage(4, LogLevel.Warning, "Replacing the local root {Path} with the one in Secret {Namespace}/{Secret}: on Kubernetes every replica signs under the Secret's root.", EventName = "SharedCaReplacedLocalRoot")]
        public static partial void ReplacingLocalRoot(ILogger logger, string path, string @namespace, string secret);
    }
}
