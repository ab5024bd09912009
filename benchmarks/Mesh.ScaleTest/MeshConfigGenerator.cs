using System.Globalization;
using System.Text;

namespace Mesh.ScaleTest;

/// <summary>
/// Writes the Istio YAML the control plane's folder source reads: one file per service (a ServiceEntry, STATIC, one
/// http port, its endpoints listed in <c>endpoints:</c>), so an endpoint change rewrites exactly one file.
/// </summary>
/// <remarks>
/// Every endpoint has its own address (10.0.0.1, 10.0.0.2, … in service order), so a ClusterLoadAssignment tells which
/// service it belongs to and a changed endpoint (11.x.y.z) is recognisable in what a client receives.
/// </remarks>
internal sealed class MeshConfigGenerator(string directory, int services, int endpoints, int routing)
{
    public const string Namespace = "default";
    public const int ServicePort = 80;
    public const int EndpointPort = 8080;

    // The address of endpoint 0 of each service, as last written.
    private readonly string[] _firstEndpoint = new string[services];

    public int Services => services;

    public static string Host(int service) => $"svc-{service.ToString("D5", CultureInfo.InvariantCulture)}.{Namespace}.svc.cluster.local";

    /// <summary>The LDS name a proxyless client asks for (<c>host:port</c>, as in <c>xds:///host:port</c>).</summary>
    public static string ListenerName(int service) => $"{Host(service)}:{ServicePort.ToString(CultureInfo.InvariantCulture)}";

    public static string Address(int service, int endpoint, int endpointsPerService) => AddressOf(10, (service * endpointsPerService) + endpoint + 1);

    /// <summary>The address endpoint 0 of a changed service gets at change <paramref name="change"/>.</summary>
    public static string ChangedAddress(int change) => AddressOf(11, change + 1);

    public string FirstEndpoint(int service) => _firstEndpoint[service];

    public async Task WriteAllAsync(CancellationToken cancellationToken)
    {
        if ((long)services * endpoints >= 1 << 24)
        {
            throw new InvalidOperationException($"--services × --endpoints must stay under {1 << 24} (one 10.x.y.z address each)");
        }

        Directory.CreateDirectory(directory);
        for (var i = 0; i < services; i++)
        {
            _firstEndpoint[i] = Address(i, 0, endpoints);
            await File.WriteAllTextAsync(FileOf(i), ServiceYaml(i, _firstEndpoint[i]), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Rewrites one service's file with endpoint 0 moved to <paramref name="address"/>, atomically (a temporary file the
    /// loader does not read, then a rename), so the watcher never reads half a file.
    /// </summary>
    public async Task ChangeEndpointAsync(int service, string address, CancellationToken cancellationToken)
    {
        _firstEndpoint[service] = address;
        var temporary = Path.Combine(directory, $".svc-{service.ToString(CultureInfo.InvariantCulture)}.tmp");
        await File.WriteAllTextAsync(temporary, ServiceYaml(service, address), cancellationToken).ConfigureAwait(false);
        File.Move(temporary, FileOf(service), overwrite: true);
    }

    private static string AddressOf(int first, int index) =>
        string.Create(CultureInfo.InvariantCulture, $"{first}.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}");

    private string FileOf(int service) => Path.Combine(directory, $"svc-{service.ToString("D5", CultureInfo.InvariantCulture)}.yaml");

    private string ServiceYaml(int service, string firstEndpoint)
    {
        var host = Host(service);
        var name = $"svc-{service.ToString("D5", CultureInfo.InvariantCulture)}";
        var withRouting = service < routing;
        var yaml = new StringBuilder(256 + (endpoints * 64));
        yaml.Append(CultureInfo.InvariantCulture, $"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {"{"}name: {name}, namespace: {Namespace}{"}"}
            spec:
              hosts: [{host}]
              location: MESH_INTERNAL
              ports: [{"{"}number: {ServicePort}, name: http, protocol: HTTP{"}"}]
              resolution: STATIC
              endpoints:

            """);
        for (var j = 0; j < endpoints; j++)
        {
            var address = j == 0 ? firstEndpoint : Address(service, j, endpoints);
            var labels = withRouting ? $", labels: {"{"}version: v{(j % 2) + 1}{"}"}" : string.Empty;
            yaml.Append(CultureInfo.InvariantCulture, $"  - {"{"}address: {address}, ports: {"{"}http: {EndpointPort}{"}"}{labels}{"}"}\n");
        }

        if (withRouting)
        {
            // A DestinationRule with two subsets (two more clusters) and a 90/10 split over them, as a canary looks.
            yaml.Append(CultureInfo.InvariantCulture, $"""
                ---
                apiVersion: networking.istio.io/v1
                kind: DestinationRule
                metadata: {"{"}name: {name}, namespace: {Namespace}{"}"}
                spec:
                  host: {host}
                  subsets:
                  - {"{"}name: v1, labels: {"{"}version: v1{"}"}{"}"}
                  - {"{"}name: v2, labels: {"{"}version: v2{"}"}{"}"}
                ---
                apiVersion: networking.istio.io/v1
                kind: VirtualService
                metadata: {"{"}name: {name}, namespace: {Namespace}{"}"}
                spec:
                  hosts: [{host}]
                  http:
                  - route:
                    - {"{"}destination: {"{"}host: {host}, subset: v1{"}"}, weight: 90{"}"}
                    - {"{"}destination: {"{"}host: {host}, subset: v2{"}"}, weight: 10{"}"}

                """);
        }

        return yaml.ToString();
    }
}
