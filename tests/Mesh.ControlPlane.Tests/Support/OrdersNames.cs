namespace Mesh.ControlPlane.Tests.Support;

/// <summary>
/// The names the control plane gives the test fixtures' <c>orders</c> service (namespace <c>default</c>, port 80):
/// its FQDN and Istio's cluster names for the service and its <c>v1</c>/<c>v2</c> subsets.
/// </summary>
internal static class OrdersNames
{
    public const string Fqdn = "orders.default.svc.cluster.local";
    public const string Cluster80 = $"outbound|80||{Fqdn}";
    public const string V1 = $"outbound|80|v1|{Fqdn}";
    public const string V2 = $"outbound|80|v2|{Fqdn}";
}
