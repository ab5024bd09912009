using System.Reflection;
using System.Security.Cryptography.X509Certificates;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Tests.Authorization.Jwt;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using Xunit.Abstractions;
using static Mesh.Client.Tests.Authorization.IstioPolicies;
using JwtAuthentication = Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtAuthentication;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// End to end: AuthorizationPolicy (and RequestAuthentication) as Istio YAML → the control plane's loader, RBAC and
/// jwt_authn translation → inbound listener (with the path settings in its HttpConnectionManager) → client decoder →
/// the real <see cref="MeshAuthorizationMiddleware"/> (JWT validation, normalization, RBAC engine). Expected outcomes
/// follow Istio's semantics (invalid token 401; DENY first; no ALLOW policy allows; otherwise some ALLOW policy must
/// match), with the mesh's ASP.NET Core path defaults (see InboundPathSettings): paths match case-insensitively and
/// with or without one trailing slash; methods that are not upper case get 400.
/// </summary>
/// <remarks>
/// One table, several files of this partial class: every static method returning <c>IEnumerable&lt;Row&gt;</c>
/// (any name, any file) is a row source (a category in the printed summary), and the size of the table is asserted
/// over all of them together. A row uses the control plane's default path handling unless it names
/// <see cref="Row.Paths"/>, and no RequestAuthentication unless it names <see cref="Row.Jwt"/>.
/// </remarks>
public sealed partial class DecisionTableTests(ITestOutputHelper output)
{
    private const int MinimumRows = 180;
    private const string Frontend = "spiffe://cluster.local/ns/default/sa/frontend";
    private const string Admin = "spiffe://cluster.local/ns/default/sa/admin";
    private const string Api = "spiffe://cluster.local/ns/prod/sa/api";
    private const string Production = "spiffe://cluster.local/ns/production/sa/x";
    private const string TestNs = "spiffe://cluster.local/ns/test/sa/x";
    private const string Plain = "";

    private const char A = 'A'; // allowed
    private const char D = 'D'; // denied (403)
    private const char B = 'B'; // bad request (400): method not upper case, encoded slash, NUL
    private const char U = 'U'; // 401 from the JWT step: invalid token
    private const char X = 'X'; // 403 from the JWT step: audience not allowed

    private static readonly AuthorizationPolicyModel[] FrontendOnly = [Allow("frontend", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/frontend"])]))];
    private static readonly AuthorizationPolicyModel[] PrincipalWildcards = [Allow("wild", Rule(from: [Source(principals: ["cluster.local/ns/prod/*", "*/sa/admin"])]))];
    private static readonly AuthorizationPolicyModel[] AnyPrincipal = [Allow("any", Rule(from: [Source(principals: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] NotFrontend = [Allow("not-frontend", Rule(from: [Source(notPrincipals: ["cluster.local/ns/default/sa/frontend"])]))];
    private static readonly AuthorizationPolicyModel[] ProdNamespace = [Allow("prod", Rule(from: [Source(namespaces: ["prod"])]))];
    private static readonly AuthorizationPolicyModel[] DenyNotDefault = [Deny("outsiders", Rule(from: [Source(notNamespaces: ["default"])]))];
    private static readonly AuthorizationPolicyModel[] ReadMethods = [Allow("read", Rule(to: [Operation(methods: ["GET", "HEAD"])]))];
    private static readonly AuthorizationPolicyModel[] DenyNotGet = [Deny("only-get", Rule(to: [Operation(notMethods: ["GET"])]))];
    private static readonly AuthorizationPolicyModel[] PathKinds = [Allow("paths", Rule(to: [Operation(paths: ["/public", "/api/*", "*.css"])]))];
    private static readonly AuthorizationPolicyModel[] AnyPath = [Allow("any-path", Rule(to: [Operation(paths: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] NotAdminPaths = [Allow("not-admin", Rule(to: [Operation(notPaths: ["/admin*"])]))];
    private static readonly AuthorizationPolicyModel[] Port8080 = [Allow("port", Rule(to: [Operation(ports: [8080])]))];
    private static readonly AuthorizationPolicyModel[] DenyNot8080 = [Deny("not-port", Rule(to: [Operation(notPorts: [8080])]))];
    private static readonly AuthorizationPolicyModel[] Hosts = [Allow("hosts", Rule(to: [Operation(hosts: ["orders.example.com", "*.internal"])]))];
    private static readonly AuthorizationPolicyModel[] DenyNotOrdersHost = [Deny("not-host", Rule(to: [Operation(notHosts: ["orders.example.com"])]))];
    private static readonly AuthorizationPolicyModel[] RoleHeader = [Allow("role", Rule(when: [Header("x-role", values: ["admin"])]))];
    private static readonly AuthorizationPolicyModel[] NotProdEnv = [Allow("env", Rule(when: [Header("x-env", notValues: ["prod"])]))];
    private static readonly AuthorizationPolicyModel[] BearerPrefix = [Allow("bearer", Rule(when: [Header("authorization", values: ["Bearer *"])]))];
    private static readonly AuthorizationPolicyModel[] WhenPrincipal = [Allow("when-principal", Rule(when: [When(ConditionKeys.SourcePrincipal, values: ["cluster.local/ns/prod/sa/api"])]))];
    private static readonly AuthorizationPolicyModel[] WhenNamespace = [Allow("when-ns", Rule(when: [When(ConditionKeys.SourceNamespace, values: ["default"])]))];
    private static readonly AuthorizationPolicyModel[] DenyWhenNotNamespace = [Deny("when-not-ns", Rule(when: [When(ConditionKeys.SourceNamespace, notValues: ["default"])]))];
    private static readonly AuthorizationPolicyModel[] DenyAdminAllowAuthenticated =
        [Deny("admin", Rule(to: [Operation(paths: ["/admin*"])])), Allow("mtls", Rule(from: [Source(principals: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyAdminOnly = [Deny("admin", Rule(to: [Operation(paths: ["/admin*"])]))];
    private static readonly AuthorizationPolicyModel[] AllowPublicOnly = [Allow("public", Rule(to: [Operation(paths: ["/public*"])]))];
    private static readonly AuthorizationPolicyModel[] AllowNothing = [Allow("allow-nothing")];
    private static readonly AuthorizationPolicyModel[] DenyAll = [Deny("deny-all", Rule())];
    private static readonly AuthorizationPolicyModel[] DenyAllWithAllow = [Deny("deny-all", Rule()), Allow("any", Rule(from: [Source(principals: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] AllowAllWithAllowNothing = [Allow("allow-nothing"), Allow("allow-all", Rule())];
    private static readonly AuthorizationPolicyModel[] AndWithinSource = [Allow("and", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/frontend"], namespaces: ["default"])]))];
    private static readonly AuthorizationPolicyModel[] OrAcrossSources = [Allow("or", Rule(from: [Source(namespaces: ["prod"]), Source(principals: ["cluster.local/ns/default/sa/frontend"])]))];
    private static readonly AuthorizationPolicyModel[] Combined =
        [Allow("combined", Rule(from: [Source(namespaces: ["default"])], to: [Operation(methods: ["GET"], paths: ["/api/*"])], when: [Header("x-a", values: ["1"])]))];

    /// <summary>Principals, namespaces, hosts, ports, headers, DENY before ALLOW, empty policies (the first table).</summary>
    private static IEnumerable<Row> CoreRows() =>
    [
        new(FrontendOnly, Frontend, "GET", "/x", A),
        new(FrontendOnly, Api, "GET", "/x", D),
        new(FrontendOnly, Plain, "GET", "/x", D),
        new(PrincipalWildcards, Api, "GET", "/x", A),
        new(PrincipalWildcards, Admin, "GET", "/x", A),
        new(PrincipalWildcards, Frontend, "GET", "/x", D),
        new(AnyPrincipal, Frontend, "GET", "/x", A),
        new(AnyPrincipal, Plain, "GET", "/x", D),
        new(NotFrontend, Frontend, "GET", "/x", D),
        new(NotFrontend, Api, "GET", "/x", A),
        new(NotFrontend, Plain, "GET", "/x", A),
        new(ProdNamespace, Api, "GET", "/x", A),
        new(ProdNamespace, Frontend, "GET", "/x", D),
        new(ProdNamespace, Plain, "GET", "/x", D),
        new(ProdNamespace, Production, "GET", "/x", D),
        new(DenyNotDefault, Frontend, "GET", "/x", A),
        new(DenyNotDefault, Api, "GET", "/x", D),
        new(DenyNotDefault, Plain, "GET", "/x", D),
        new(ReadMethods, Plain, "GET", "/x", A),
        new(ReadMethods, Plain, "HEAD", "/x", A),
        new(ReadMethods, Plain, "POST", "/x", D),
        new(ReadMethods, Plain, "get", "/x", B),
        new(DenyNotGet, Plain, "GET", "/x", A),
        new(DenyNotGet, Plain, "DELETE", "/x", D),
        new(PathKinds, Plain, "GET", "/public", A),
        new(PathKinds, Plain, "GET", "/public/x", D),
        new(PathKinds, Plain, "GET", "/api/orders", A),
        new(PathKinds, Plain, "GET", "/api", A), // the router routes /api and /api/ alike
        new(PathKinds, Plain, "GET", "/api", D, Paths: IstioPaths),
        new(PathKinds, Plain, "GET", "/site.css", A),
        new(PathKinds, Plain, "GET", "/admin", D),
        new(PathKinds, Plain, "GET", "/public?x=1", A),
        new(PathKinds, Plain, "GET", "/site.css?v=/admin", A),
        new(AnyPath, Plain, "GET", "/anything/at/all", A),
        new(NotAdminPaths, Plain, "GET", "/x", A),
        new(NotAdminPaths, Plain, "GET", "/admin/x", D),
        new(Port8080, Plain, "GET", "/x", A, Port: 8080),
        new(Port8080, Plain, "GET", "/x", D, Port: 9090),
        new(DenyNot8080, Plain, "GET", "/x", A, Port: 8080),
        new(DenyNot8080, Plain, "GET", "/x", D, Port: 9090),
        new(Hosts, Plain, "GET", "/x", A, Host: "orders.example.com"),
        new(Hosts, Plain, "GET", "/x", A, Host: "ORDERS.Example.com"),
        new(Hosts, Plain, "GET", "/x", A, Host: "orders.example.com:8080"),
        new(Hosts, Plain, "GET", "/x", A, Host: "a.internal:443"),
        new(Hosts, Plain, "GET", "/x", A, Host: "a.internal"),
        new(Hosts, Plain, "GET", "/x", D, Host: "evil.com"),
        new(Hosts, Plain, "GET", "/x", D, Host: "orders.example.com.evil.com"),
        new(Hosts, Plain, "GET", "/x", D, Host: null),
        new(DenyNotOrdersHost, Plain, "GET", "/x", A, Host: "orders.example.com"),
        new(DenyNotOrdersHost, Plain, "GET", "/x", D, Host: "billing.example.com"),
        new(RoleHeader, Plain, "GET", "/x", A, Headers: ["x-role", "admin"]),
        new(RoleHeader, Plain, "GET", "/x", D, Headers: ["x-role", "user"]),
        new(RoleHeader, Plain, "GET", "/x", D),
        new(NotProdEnv, Plain, "GET", "/x", A, Headers: ["x-env", "dev"]),
        new(NotProdEnv, Plain, "GET", "/x", D, Headers: ["x-env", "prod"]),
        new(NotProdEnv, Plain, "GET", "/x", A),
        new(BearerPrefix, Plain, "GET", "/x", A, Headers: ["authorization", "Bearer abc"]),
        new(BearerPrefix, Plain, "GET", "/x", D, Headers: ["authorization", "Basic abc"]),
        new(WhenPrincipal, Api, "GET", "/x", A),
        new(WhenPrincipal, Frontend, "GET", "/x", D),
        new(WhenNamespace, Frontend, "GET", "/x", A),
        new(WhenNamespace, Plain, "GET", "/x", D),
        new(DenyWhenNotNamespace, Api, "GET", "/x", D),
        new(DenyWhenNotNamespace, Frontend, "GET", "/x", A),
        new(DenyAdminAllowAuthenticated, Frontend, "GET", "/admin", D),
        new(DenyAdminAllowAuthenticated, Frontend, "GET", "/x", A),
        new(DenyAdminAllowAuthenticated, Plain, "GET", "/x", D),
        new(DenyAdminOnly, Plain, "GET", "/x", A),
        new(DenyAdminOnly, Plain, "GET", "/admin", D),
        new(DenyAdminOnly, Plain, "GET", "/admin/users", D),
        new(DenyAdminOnly, Plain, "GET", "//admin", D),
        new(DenyAdminOnly, Plain, "GET", "/admin/.", D),
        new(DenyAdminOnly, Plain, "GET", "/public/../admin", D),
        new(DenyAdminOnly, Plain, "GET", "/%61dmin", D),
        new(DenyAdminOnly, Plain, "GET", "/%61%64%6D%69%6E", D),
        new(DenyAdminOnly, Plain, "GET", "/public/%2e%2e/admin", D),
        new(DenyAdminOnly, Plain, "GET", "/public/%2E%2E/admin", D),
        new(DenyAdminOnly, Plain, "GET", "/public/.%2e/admin", D),
        new(DenyAdminOnly, Plain, "GET", "/./admin", D),
        new(DenyAdminOnly, Plain, "GET", "/public\\..\\admin", B),
        new(DenyAdminOnly, Plain, "GET", "/public;/../admin", D),
        new(DenyAdminOnly, Plain, "GET", "/admin?x=y", D),
        new(DenyAdminOnly, Plain, "GET", "/admin%2F..", B),
        new(DenyAdminOnly, Plain, "GET", "/public%2f..%2fadmin", B),
        new(DenyAdminOnly, Plain, "GET", "/public/..%5Cadmin", B),
        new(DenyAdminOnly, Plain, "GET", "/Admin", D),
        new(DenyAdminOnly, Plain, "GET", "/ADMIN", D),
        new(DenyAdminOnly, Plain, "GET", "/Admin", A, Paths: IstioPaths),
        new(DenyAdminOnly, Plain, "GET", "/ADMIN", A, Paths: IstioPaths),
        new(DenyAdminOnly, Plain, "GET", "/%252e%252e/admin", A), // decoded once (like Kestrel): segment "%2e%2e", not a traversal
        new(AllowPublicOnly, Plain, "GET", "/public/x", A),
        new(AllowPublicOnly, Plain, "GET", "/PUBLIC", A),
        new(AllowPublicOnly, Plain, "GET", "/PUBLIC", D, Paths: IstioPaths),
        new(AllowPublicOnly, Plain, "GET", "/Admin", D),
        new(AllowPublicOnly, Plain, "GET", "/public/../admin", D),
        new(AllowPublicOnly, Plain, "GET", "/public/%2e%2e/admin", D),
        new(AllowPublicOnly, Plain, "GET", "/public/%2F../admin", B),
        new(AllowNothing, Plain, "GET", "/x", D),
        new(AllowNothing, Frontend, "GET", "/x", D),
        new(DenyAll, Frontend, "GET", "/x", D),
        new(DenyAll, Plain, "POST", "/", D),
        new(DenyAllWithAllow, Frontend, "GET", "/x", D),
        new(AllowAllWithAllowNothing, Plain, "GET", "/x", A),
        new(AndWithinSource, Frontend, "GET", "/x", A),
        new(AndWithinSource, Admin, "GET", "/x", D),
        new(OrAcrossSources, Api, "GET", "/x", A),
        new(OrAcrossSources, Frontend, "GET", "/x", A),
        new(OrAcrossSources, TestNs, "GET", "/x", D),
        new(Combined, Frontend, "GET", "/api/orders", A, Headers: ["x-a", "1"]),
        new(Combined, Frontend, "POST", "/api/orders", D, Headers: ["x-a", "1"]),
        new(Combined, Frontend, "GET", "/api/orders", D),
        new(Combined, Api, "GET", "/api/orders", D, Headers: ["x-a", "1"]),
        new(Combined, Frontend, "GET", "/other", D, Headers: ["x-a", "1"]),

        // No rules: the path is still normalized, and REJECT_REQUEST refuses an escaped slash, as Envoy does.
        new([], Plain, "GET", "/%2F", B),
        new([], Plain, "GET", "/a/../b", A),
    ];

    private static readonly AuthorizationPolicyModel[] TwoPorts = [Allow("ports", Rule(to: [Operation(ports: [8080, 9090])]))];
    private static readonly AuthorizationPolicyModel[] AllowNot9090 = [Allow("not-9090", Rule(to: [Operation(notPorts: [9090])]))];
    private static readonly AuthorizationPolicyModel[] NotProdNamespace = [Allow("not-prod", Rule(from: [Source(notNamespaces: ["prod"])]))];
    private static readonly AuthorizationPolicyModel[] AnyNamespace = [Allow("any-ns", Rule(from: [Source(namespaces: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyProdAllowAuthenticated = [Deny("no-prod", Rule(from: [Source(namespaces: ["prod"])])), Allow("mtls", Rule(from: [Source(principals: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyAndAllowSamePath = [Deny("d", Rule(to: [Operation(paths: ["/admin*"])])), Allow("a", Rule(to: [Operation(paths: ["/admin*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyNothing = [Deny("deny-nothing")];
    private static readonly AuthorizationPolicyModel[] DenyNothingAllowNothing = [Deny("deny-nothing"), Allow("allow-nothing")];
    private static readonly AuthorizationPolicyModel[] AllowAll = [Allow("allow-all", Rule())];
    private static readonly AuthorizationPolicyModel[] DenyNotPrincipal = [Deny("not-admin", Rule(from: [Source(notPrincipals: ["cluster.local/ns/default/sa/admin"])], to: [Operation(paths: ["/admin*"])]))];

    /// <summary>More identities, ports, not* and empty policies.</summary>
    private static IEnumerable<Row> ScopeRows() =>
    [
        new(FrontendOnly, "spiffe://other.domain/ns/default/sa/frontend", "GET", "/x", D),
        new(FrontendOnly, "spiffe://cluster.local/ns/default/sa/frontend-evil", "GET", "/x", D),
        new(FrontendOnly, "spiffe://cluster.local/ns/default/sa/Frontend", "GET", "/x", D),
        new(ProdNamespace, "spiffe://cluster.local/ns/prod-evil/sa/x", "GET", "/x", D),
        new(ProdNamespace, "spiffe://cluster.local/ns/PROD/sa/x", "GET", "/x", D),
        new(NotProdNamespace, Frontend, "GET", "/x", A),
        new(NotProdNamespace, Api, "GET", "/x", D),
        new(NotProdNamespace, Plain, "GET", "/x", A),
        new(AnyNamespace, Frontend, "GET", "/x", A),
        new(AnyNamespace, Plain, "GET", "/x", D),
        new(TwoPorts, Plain, "GET", "/x", A, Port: 8080),
        new(TwoPorts, Plain, "GET", "/x", A, Port: 9090),
        new(TwoPorts, Plain, "GET", "/x", D, Port: 7070),
        new(AllowNot9090, Plain, "GET", "/x", A, Port: 8080),
        new(AllowNot9090, Plain, "GET", "/x", D, Port: 9090),
        new(DenyProdAllowAuthenticated, Api, "GET", "/x", D),
        new(DenyProdAllowAuthenticated, Frontend, "GET", "/x", A),
        new(DenyProdAllowAuthenticated, Plain, "GET", "/x", D),
        new(DenyAndAllowSamePath, Frontend, "GET", "/admin", D),
        new(DenyAndAllowSamePath, Frontend, "GET", "/x", D),
        new(DenyNotPrincipal, Admin, "GET", "/admin", A),
        new(DenyNotPrincipal, Frontend, "GET", "/admin", D),
        new(DenyNotPrincipal, Plain, "GET", "/Admin/", D),
        new(DenyNotPrincipal, Frontend, "GET", "/x", A),
        new(DenyNothing, Plain, "GET", "/x", A),
        new(DenyNothing, Frontend, "DELETE", "/admin", A),
        new(DenyNothingAllowNothing, Frontend, "GET", "/x", D),
        new(AllowAll, Plain, "DELETE", "/anything", A),
        new(AllowAll, Frontend, "GET", "/", A),
        new(AllowNothing, Admin, "POST", "/", D),
        new(DenyAll, Admin, "GET", "/", D),
        new([], Frontend, "GET", "/admin", A),
        new([], Plain, "POST", "/x/../admin", A),
    ];

    private static readonly InboundPathSettings IstioPaths = InboundPathSettings.Istio;

    /// <summary>All rows of every source file, each with the name of the method that produced it.</summary>
    private static List<(string Source, Row Row)> AllRows() =>
        [.. typeof(DecisionTableTests).GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
            .Where(m => m.ReturnType == typeof(IEnumerable<Row>) && m.GetParameters().Length == 0)
            .OrderBy(m => m.Name, StringComparer.Ordinal)
            .SelectMany(m => ((IEnumerable<Row>)m.Invoke(null, null)!).Select(row => (m.Name, row)))];

    [Fact]
    public async Task Authorize_DecisionTable_EveryRowMatchesIstioSemantics()
    {
        var wrong = new List<string>();
        var rows = AllRows();
        var loaded = new Dictionary<AuthorizationPolicyModel[], AuthorizationPolicyModel[]>(ReferenceEqualityComparer.Instance);
        var loadedJwt = new Dictionary<RequestAuthenticationModel[], RequestAuthenticationModel[]>(ReferenceEqualityComparer.Instance);
        foreach (var (source, row) in rows)
        {
            // Each policy set goes through its Istio YAML and the control plane's loader before translation.
            if (!loaded.TryGetValue(row.Policies, out var policies))
            {
                loaded[row.Policies] = policies = IstioYaml.RoundTrip(row.Policies);
            }

            JwtAuthentication? jwt = null;
            if (row.Jwt is { Length: > 0 })
            {
                if (!loadedJwt.TryGetValue(row.Jwt, out var requestAuthentications))
                {
                    loadedJwt[row.Jwt] = requestAuthentications = IstioYaml.RoundTrip(row.Jwt);
                }

                jwt = JwtTestTokens.Config(requestAuthentications);
            }

            var (actual, reason) = await RunAsync(JwtTestTokens.Listener(policies, jwt, row.Port, paths: row.Paths), row);
            if (actual != row.Expected)
            {
                wrong.Add($"{source}: {row}: expected {row.Expected}, got {actual} ({reason})");
            }
        }

        foreach (var line in wrong)
        {
            output.WriteLine(line);
        }

        foreach (var group in rows.GroupBy(r => r.Source))
        {
            var outcomes = string.Join(", ", group.GroupBy(r => r.Row.Expected).OrderBy(o => o.Key).Select(o => $"{o.Key} {o.Count()}"));
            output.WriteLine($"{group.Key}: {group.Count()} rows ({outcomes})");
        }

        output.WriteLine($"decision table: {rows.Count} rows, {wrong.Count} wrong");
        Assert.Empty(wrong);
        Assert.True(rows.Count >= MinimumRows, $"the decision table has {rows.Count} rows; at least {MinimumRows} are required");
    }

    /// <summary>
    /// One request through the real <see cref="MeshAuthorizationMiddleware"/> on the row's port: JWT step (when the
    /// listener has jwt_authn), then normalization + RBAC. Returns A (the app runs), B (400), D (403 RBAC), U (401 from
    /// the JWT step) or X (403 from the JWT step: audience not allowed), and what the middleware logged.
    /// </summary>
    private static async Task<(char Outcome, string? Reason)> RunAsync(Listener listener, Row row)
    {
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors), string.Join("; ", errors));
        var store = new InboundPolicyStore();
        store.Replace([policy]);
        var logger = new LastMessageLogger();
        var reached = false;
        var middleware = new MeshAuthorizationMiddleware(_ => { reached = true; return Task.CompletedTask; }, store, logger);
        var context = new DefaultHttpContext();
        context.Connection.LocalPort = (int)row.Port;
        context.Request.Method = row.Method;

        // RawTarget as received: what RBAC authorizes. Path (what jwt_authn's prefix rules look at): the target without
        // its query, left encoded (Kestrel would decode it, but refuses %00 first; the prefix here is "/" either way).
        // A target that is not origin-form (Kestrel would refuse it) leaves Path empty; the middleware falls back to it
        // and authorizes "", which gets 400.
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = row.Target;
        if (row.Target.StartsWith('/'))
        {
            var end = row.Target.AsSpan().IndexOfAny('?', '#');
            context.Request.Path = new PathString(end < 0 ? row.Target : row.Target[..end]);
        }

        context.Response.Body = new MemoryStream();
        if (row.Host is not null)
        {
            context.Request.Host = new HostString(row.Host);
        }

        for (var i = 0; i + 1 < (row.Headers?.Length ?? 0); i += 2)
        {
            // A repeated name adds a value, as Kestrel does for a header sent twice (an empty value included).
            context.Request.Headers[row.Headers![i]] = StringValues.Concat(context.Request.Headers[row.Headers[i]], new StringValues(row.Headers[i + 1]));
        }

        if (row.Token is not null)
        {
            context.Request.Headers.Authorization = "Bearer " + row.Token;
        }

        if (row.Jwt is { Length: > 0 } && row.Target.IndexOf('?', StringComparison.Ordinal) is var query and >= 0)
        {
            context.Request.QueryString = new QueryString(row.Target[query..]);
        }

        if (row.Peer.Length > 0)
        {
            context.Features.Set<IMeshPeerIdentityFeature>(new Peer(row.Peer));
        }

        await middleware.InvokeAsync(context);
        var outcome = reached ? A : context.Response.StatusCode switch
        {
            400 => B,
            401 => U,
            403 when context.Response.Headers.WWWAuthenticate.Count > 0 => X,
            403 => D,
            var status => (char)('0' + (status / 100)), // anything else is wrong for every row
        };
        return (outcome, logger.Last);
    }

    /// <summary>One request against one policy set; <paramref name="Headers"/> are name/value pairs (a name may repeat).</summary>
    /// <remarks>
    /// <paramref name="Jwt"/>: the port's RequestAuthentications (null or empty: none, so no token is ever validated);
    /// <paramref name="Token"/>: a bearer token sent in <c>Authorization</c>.
    /// </remarks>
    private sealed record Row(
        AuthorizationPolicyModel[] Policies, string Peer, string Method, string Target, char Expected,
        string? Host = "svc", string[]? Headers = null, uint Port = 8080, InboundPathSettings? Paths = null,
        RequestAuthenticationModel[]? Jwt = null, string? Token = null)
    {
        public override string ToString() =>
            $"{string.Join(",", Policies.Select(p => p.Name))}"
            + (Jwt is { Length: > 0 } ? $" ra=[{string.Join(",", Jwt.Select(r => r.Name + ":" + string.Join("+", r.JwtRules.Select(j => j.Issuer))))}]" : string.Empty)
            + $" | {(Peer.Length == 0 ? "plaintext" : Peer)} {Method} {Target} host={Host} port={Port} paths={Paths ?? InboundPathSettings.Default}"
            + (Headers is null ? string.Empty : $" headers=[{string.Join(",", Headers)}]")
            + (Token is null ? string.Empty : $" token={Token[..Math.Min(16, Token.Length)]}…");
    }

    private sealed class Peer(string spiffeId) : IMeshPeerIdentityFeature
    {
        public string? SpiffeId => spiffeId;

        public string? PeerNamespace => spiffeId.Split('/') is { Length: > 4 } parts ? parts[4] : null;

        public string? PeerServiceAccount => spiffeId.Split('/') is { Length: > 6 } parts ? parts[6] : null;

        public X509Certificate2? Certificate => null;
    }

    /// <summary>Keeps the middleware's last log line: the reason a wrong row was denied or refused.</summary>
    private sealed class LastMessageLogger : ILogger<MeshAuthorizationMiddleware>
    {
        public string? Last { get; private set; }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Last = formatter(state, exception);
    }
}
