using System.Collections;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Telemetry;

internal sealed partial class MeshAccessLog
{
    // The access log is a record, not a diagnostic message, and the one entry the [LoggerMessage] generator cannot write:
    // Envoy's text format prints a value it does not know as "-", where the generated formatter prints "(null)". So the
    // entry is a state of its own, as the generator's would be: the structured properties (null when unknown, for a JSON
    // console or OpenTelemetry's log exporter) and {OriginalFormat}, and a message with "-" in their place.
#pragma warning disable IDE1006 // snake_case: the property names are Istio's
    private static class Log
    {
        /// <summary>Istio's <c>EnvoyTextLogFormat</c>, its operators named as the keys of Istio's JSON access log, the mesh's own fields appended.</summary>
        public const string Format =
            "[{start_time}] \"{method} {path} {protocol}\" {response_code} {response_flags} {response_code_details} {connection_termination_details} "
            + "\"{upstream_transport_failure_reason}\" {bytes_received} {bytes_sent} {duration} {upstream_service_time} \"{x_forwarded_for}\" "
            + "\"{user_agent}\" \"{request_id}\" \"{authority}\" \"{upstream_host}\" {upstream_cluster} {upstream_local_address} "
            + "{downstream_local_address} {downstream_remote_address} {requested_server_name} {route_name} "
            + "{direction} {reporter} {source_principal} {destination_principal} {attempts} {grpc_status}";

        public static readonly EventId EventId = new(1, "AccessLog");

        public static void Entry(
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
            int? grpc_status)
        {
            // In the order of Format's placeholders (AccessLogEntry.Keys).
            var entry = new AccessLogEntry(
            [
                start_time, method, path, protocol, response_code, response_flags, response_code_details, connection_termination_details,
                upstream_transport_failure_reason, bytes_received, bytes_sent, duration, upstream_service_time, x_forwarded_for,
                user_agent, request_id, authority, upstream_host, upstream_cluster, upstream_local_address, downstream_local_address,
                downstream_remote_address, requested_server_name, route_name, direction, reporter, source_principal,
                destination_principal, attempts, grpc_status,
            ]);
            logger.Log(LogLevel.Information, EventId, entry, null, static (state, _) => state.ToString());
        }
    }
#pragma warning restore IDE1006

    /// <summary>One access-log entry: its properties by Istio's key names, then <c>{OriginalFormat}</c>; its text is Envoy's.</summary>
    internal sealed class AccessLogEntry(object?[] values) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        /// <summary>What Envoy prints for a value it does not have.</summary>
        public const string Missing = "-";

        // Format split once into its literal text and its placeholders: Literals[i] precedes Keys[i]; Literals[^1] ends it.
        private static readonly (string[] Keys, string[] Literals) Template = Split(Log.Format);

        public static IReadOnlyList<string> Keys => Template.Keys;

        public int Count => values.Length + 1;

        public KeyValuePair<string, object?> this[int index] =>
            index == values.Length
                ? new("{OriginalFormat}", Log.Format)
                : new(Template.Keys[index], values[index]);

        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
        {
            for (var i = 0; i < Count; i++)
            {
                yield return this[i];
            }
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        public override string ToString()
        {
            var text = new StringBuilder(256);
            for (var i = 0; i < values.Length; i++)
            {
                text.Append(Template.Literals[i]);
                var value = values[i] switch
                {
                    null => Missing,
                    string { Length: 0 } => Missing,
                    IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
                    var other => other.ToString(),
                };
                text.Append(value);
            }

            return text.Append(Template.Literals[^1]).ToString();
        }

        private static (string[] Keys, string[] Literals) Split(string format)
        {
            var keys = new List<string>();
            var literals = new List<string>();
            var start = 0;
            while (format.IndexOf('{', start) is var open and >= 0)
            {
                var close = format.IndexOf('}', open);
                literals.Add(format[start..open]);
                keys.Add(format[(open + 1)..close]);
                start = close + 1;
            }

            literals.Add(format[start..]);
            return ([.. keys], [.. literals]);
        }
    }
}
