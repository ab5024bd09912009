using System.Globalization;
using System.Reflection;

namespace Mesh.Demo;

/// <summary>
/// The demo's orders VirtualService: an A/B route (requests from beta users, header <c>x-demo-user: beta</c>, always
/// go to v2) and a weighted split between v1 and v2 for everyone else. <c>Mesh.Demo split &lt;percent&gt;</c> rewrites
/// it in the config folder the running demo's control plane watches: 10 is a canary, 100 a blue-green switch to v2,
/// 0 a switch back.
/// </summary>
internal static class OrdersRoutes
{
    public const string FileName = "orders-routes.yaml";

    public static string Render(int v2Percent)
    {
        if (v2Percent is < 0 or > 100)
        {
            throw new ArgumentOutOfRangeException(nameof(v2Percent), v2Percent, "The share of v2 is a percentage, 0 to 100.");
        }

        var v1 = (100 - v2Percent).ToString(CultureInfo.InvariantCulture);
        var v2 = v2Percent.ToString(CultureInfo.InvariantCulture);
        return $$"""
            # Routes to orders. Written by `dotnet run --project samples/Mesh.Demo -- split <v2 percent>`; edit it
            # by hand as well: the control plane applies a change within a second, and keeps the last good routes
            # (and says why in its log) if the file does not validate.
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata:
              name: orders
              namespace: default
            spec:
              hosts: [orders.default.svc.cluster.local]
              http:
                # A/B: beta users always get v2.
                - name: beta-users
                  match:
                    - headers:
                        x-demo-user:
                          exact: beta
                  route:
                    - destination:
                        host: orders.default.svc.cluster.local
                        subset: v2
                # Everyone else: the split (v1 {{v1}} %, v2 {{v2}} %).
                - name: split
                  route:
                    - destination:
                        host: orders.default.svc.cluster.local
                        subset: v1
                      weight: {{v1}}
                    - destination:
                        host: orders.default.svc.cluster.local
                        subset: v2
                      weight: {{v2}}

            """;
    }

    /// <summary>
    /// The config folder the demo runs on: the source tree's <c>samples/Mesh.Demo/mesh-config</c> when it exists (so
    /// the file a user edits is the one in the repository), else the copy next to the demo's binaries.
    /// </summary>
    public static string ConfigDirectory()
    {
        var source = typeof(OrdersRoutes).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "MeshDemoConfigDirectory")?.Value;
        return source is not null && Directory.Exists(source) ? source : Path.Combine(AppContext.BaseDirectory, "mesh-config");
    }

    /// <summary>Writes the routes with <paramref name="v2Percent"/> to v2 (atomically: the watcher never reads half a file).</summary>
    public static string Write(string configDirectory, int v2Percent)
    {
        var path = Path.Combine(configDirectory, FileName);
        var temporary = Path.Combine(configDirectory, $".{FileName}.tmp");
        File.WriteAllText(temporary, Render(v2Percent));
        File.Move(temporary, path, overwrite: true);
        return path;
    }
}
