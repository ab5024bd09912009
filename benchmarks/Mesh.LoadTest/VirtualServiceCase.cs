using System.Globalization;

namespace Mesh.LoadTest;

/// <summary>
/// The load run's routed service: <c>backend-vs</c>, the same backend as <c>backend</c>, behind a VirtualService of 10
/// routes. The load's requests (GET /, no headers) miss the first nine and take the tenth, a 90/10 split over two
/// subsets that both select the backend: every route condition is evaluated on every request.
/// </summary>
internal static class VirtualServiceCase
{
    public static string Yaml(int backendPort) => """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: backend-vs, namespace: default}
        spec:
          hosts: [backend-vs.default.svc.cluster.local]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          endpoints: [{address: 127.0.0.1, ports: {http: BACKEND_PORT}, labels: {app: backend-vs}}]
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: backend-vs, namespace: default}
        spec:
          host: backend-vs.default.svc.cluster.local
          subsets:
          - {name: v1, labels: {app: backend-vs}}
          - {name: v2, labels: {app: backend-vs}}
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: backend-vs, namespace: default}
        spec:
          hosts: [backend-vs.default.svc.cluster.local]
          http:
          - match: [{headers: {x-beta: {exact: "1"}}}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v2}}]
          - match: [{uri: {prefix: /admin}, headers: {x-role: {regex: "admin|ops"}}}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v2}}]
          - match: [{uri: {regex: "/beta/[0-9]+"}}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v2}}]
          - match: [{uri: {prefix: /api/v3/}}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v2}}]
          - match: [{uri: {exact: /healthz}}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v1}}]
          - match: [{headers: {x-canary: {}}}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v2}}]
          - match: [{uri: {prefix: /Reports}, ignoreUriCase: true}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v1}}]
          - match: [{headers: {user-agent: {prefix: curl/}}}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v1}}]
          - match: [{uri: {prefix: /legacy}, method: {exact: POST}}]
            route: [{destination: {host: backend-vs.default.svc.cluster.local, subset: v1}}]
          - route:
            - {destination: {host: backend-vs.default.svc.cluster.local, subset: v1}, weight: 90}
            - {destination: {host: backend-vs.default.svc.cluster.local, subset: v2}, weight: 10}
        """.Replace("BACKEND_PORT", backendPort.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
}
