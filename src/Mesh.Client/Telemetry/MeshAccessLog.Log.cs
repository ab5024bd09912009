using Microsoft.Extensions.Logging;

namespace Mesh.Client.Telemetry;

internal sealed partial class MeshAccessLog
{
    // The parameters are named as the keys of Istio's JSON access log (EnvoyJSONLogFormatIstio), so each becomes a structured
    // property of that name; the message is Istio's EnvoyTextLogFormat in the same order, the mesh's own fields appended.
#pragma warning disable IDE1006 // snake_case: the property names are Istio's
    private static partial class Log
    {
        [LoggerMessage(
            1,
            LogLevel.Information,
            "[{start_time}] \"{method} {path} {protocol}\" {response_code} {response_flags} {response_code_details} {connection_termination_details} "
                + "\"{upstream_transport_failure_reason}\" {bytes_received} {bytes_sent} {duration} {upstream_service_time} \"{x_forwarded_for}\" "
                + "\"{user_agent}\" \"{request_id}\" \"{authority}\" \"{upstream_host}\" {upstream_cluster} {upstream_local_address} "
                + "{downstream_local_address} {downstream_remote_address} {requested_server_name} {route_name} "
                + "{direction} {reporter} {source_principal} {destination_principal} {attempts} {grpc_status}",
            EventName = "AccessLog")]
        public static partial void Entry(
            ILogger logger,
            string start_time,
            string method,
            string path,
            string protocol,
            int response_code,
            string response_flags,
            string? response_code_details,
            string? connection_termination_details,
            string? upstream_transport_failure_reason,
            long bytes_received,
            long bytes_sent,
            long duration,
            string? upstream_service_time,
            string? x_forwarded_for,
            string? user_agent,
            string? request_id,
            string? authority,
            string? upstream_host,
            string? upstream_cluster,
            string? upstream_local_address,
            string? downstream_local_address,
            string? downstream_remote_address,
            string? requested_server_name,
            string? route_name,
            string direction,
            string reporter,
            string? source_principal,
            string? destination_principal,
            int? attempts,
            int? grpc_status);
    }
#pragma warning restore IDE1006
}
