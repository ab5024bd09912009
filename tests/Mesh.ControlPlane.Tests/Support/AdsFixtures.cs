namespace Mesh.ControlPlane.Tests.Support;

/// <summary>Config folders shared by the ADS tests: <c>orders</c> with one registered workload, <c>payments</c> with a static endpoint.</summary>
internal static class AdsFixtures
{
    public const string Orders = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: orders
        spec:
          hosts: [orders]
          ports:
          - number: 80
            name: http
            protocol: HTTP
          workloadSelector:
            labels: {app: orders}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata:
          name: orders-1
        spec:
          address: 127.0.0.1
          ports: {http: 5001}
          labels: {app: orders}
        """;

    public const string Payments = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: payments
        spec:
          hosts: [payments]
          ports:
          - number: 50051
            name: grpc
            protocol: GRPC
          endpoints:
          - address: 127.0.0.2
        """;
}
