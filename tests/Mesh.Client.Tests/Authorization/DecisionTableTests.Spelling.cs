using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// Rows that try to side-step a policy by spelling: method case, path case, trailing slash, dot segments, escapes,
/// <c>%2F</c>/<c>%5C</c>, <c>%00</c>, path parameters, duplicate slashes, repeated headers — under each
/// pathNormalization mode. Expectations follow what the ASP.NET Core router routes (see KestrelRoutingTests):
/// a spelling the router sends to a denied endpoint is denied; one it routes nowhere may pass RBAC.
/// </summary>
public sealed partial class DecisionTableTests
{
    private static readonly InboundPathSettings NonePaths = new(PathNormalizationMode.None);
    private static readonly InboundPathSettings BasePaths = new(PathNormalizationMode.Base);
    private static readonly InboundPathSettings DecodePaths = new(PathNormalizationMode.DecodeAndMergeSlashes, RejectEscapedSlashes: false);
    private static readonly InboundPathSettings KeepEscapedSlashes = new(RejectEscapedSlashes: false);
    private static readonly InboundPathSettings CaseSensitive = new(IgnoreCase: false);
    private static readonly InboundPathSettings SlashExact = new(IgnoreTrailingSlash: false);

    private static readonly AuthorizationPolicyModel[] DenyDeleteOrders = [Deny("no-delete", Rule(to: [Operation(methods: ["DELETE"], paths: ["/orders/*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyAdminExact = [Deny("admin-exact", Rule(to: [Operation(paths: ["/admin"])]))];
    private static readonly AuthorizationPolicyModel[] AllowPublicDir = [Allow("public-dir", Rule(to: [Operation(paths: ["/public/*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyCss = [Deny("css", Rule(to: [Operation(paths: ["*.css"])]))];
    private static readonly AuthorizationPolicyModel[] AllowDocsSlash = [Allow("docs", Rule(to: [Operation(paths: ["/docs/"])]))];
    private static readonly AuthorizationPolicyModel[] DenyAllButHealth = [Deny("only-health", Rule(to: [Operation(notPaths: ["/healthz"])]))];
    private static readonly AuthorizationPolicyModel[] AllowRootOnly = [Allow("root", Rule(to: [Operation(paths: ["/"])]))];
    private static readonly AuthorizationPolicyModel[] AllowWriteMethods = [Allow("write", Rule(to: [Operation(methods: ["POST", "PUT", "PATCH"])]))];
    private static readonly AuthorizationPolicyModel[] TagsPrefix = [Allow("tags", Rule(when: [Header("x-tags", values: ["a*"])]))];
    private static readonly AuthorizationPolicyModel[] TagsSuffix = [Allow("tags-suffix", Rule(when: [Header("x-tags", values: ["*b"])]))];
    private static readonly AuthorizationPolicyModel[] DenyDebugHeader = [Deny("debug", Rule(when: [Header("x-debug", values: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] RoleHeaderExact = [Allow("role-exact", Rule(when: [Header("x-role", values: ["admin"])]))];
    private static readonly AuthorizationPolicyModel[] DenyProdEnv = [Deny("prod-env", Rule(when: [Header("x-env", values: ["prod"])]))];

    /// <summary>Methods: Istio matches them exactly and Envoy refuses a method that is not upper case (400).</summary>
    private static IEnumerable<Row> MethodRows() =>
    [
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/1", D),
        new(DenyDeleteOrders, Plain, "delete", "/orders/1", B),
        new(DenyDeleteOrders, Plain, "Delete", "/orders/1", B),
        new(DenyDeleteOrders, Plain, "DELETe", "/orders/1", B),
        new(DenyDeleteOrders, Plain, "GET", "/orders/1", A),
        new(DenyDeleteOrders, Plain, "POST", "/orders/1", A),
        new(DenyDeleteOrders, Plain, "delete", "/orders/1", B, Paths: IstioPaths),
        new(ReadMethods, Plain, "Get", "/x", B),
        new(ReadMethods, Plain, "head", "/x", B),
        new(ReadMethods, Plain, "OPTIONS", "/x", D),
        new(ReadMethods, Plain, "M-SEARCH", "/x", D),
        new(DenyNotGet, Plain, "get", "/x", B),
        new(DenyNotGet, Plain, "PATCH", "/x", D),
        new(DenyNotGet, Plain, "HEAD", "/x", D),
        new(AllowWriteMethods, Plain, "PUT", "/x", A),
        new(AllowWriteMethods, Plain, "PATCH", "/x", A),
        new(AllowWriteMethods, Plain, "put", "/x", B),
        new(AllowWriteMethods, Plain, "GET", "/x", D),
        new([], Plain, "delete", "/x", B), // no policy: still refused, no spelling of a method reaches the app
        new([], Plain, "DELETE", "/x", A),
    ];

    /// <summary>Case and trailing slash: the ASP.NET Core router ignores both, so by default RBAC does too.</summary>
    private static IEnumerable<Row> PathCaseAndSlashRows() =>
    [
        new(DenyDeleteOrders, Plain, "DELETE", "/Orders/1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/ORDERS/1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/1/", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/Orders/1", A, Paths: IstioPaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders", A, Paths: IstioPaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/Orders/1", A, Paths: CaseSensitive),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders", A, Paths: SlashExact),
        new(DenyAdminExact, Plain, "GET", "/admin", D),
        new(DenyAdminExact, Plain, "GET", "/admin/", D),
        new(DenyAdminExact, Plain, "GET", "/ADMIN", D),
        new(DenyAdminExact, Plain, "GET", "/Admin/", D),
        new(DenyAdminExact, Plain, "GET", "/admin//", D), // merged to /admin/
        new(DenyAdminExact, Plain, "GET", "/admin/.", D),
        new(DenyAdminExact, Plain, "GET", "/admin/x", A),
        new(DenyAdminExact, Plain, "GET", "/administrator", A),
        new(DenyAdminExact, Plain, "GET", "/admin.json", A),
        new(DenyAdminExact, Plain, "GET", "/admin?x=1", D),
        new(DenyAdminExact, Plain, "GET", "/admin#top", B), // a fragment is never sent: 400 (Kestrel would keep it in the path)
        new(DenyAdminExact, Plain, "GET", "/x#/../admin", B),
        new(DenyAdminExact, Plain, "GET", "/admin;jsessionid=1", A), // the router routes this nowhere (segment "admin;jsessionid=1")
        new(DenyAdminExact, Plain, "GET", "/admin/", A, Paths: IstioPaths),
        new(DenyAdminExact, Plain, "GET", "/ADMIN", A, Paths: IstioPaths),
        new(DenyAdminExact, Plain, "GET", "/admin", D, Paths: IstioPaths),
        new(DenyAdminExact, Plain, "GET", "/ADMIN", A, Paths: CaseSensitive),
        new(DenyAdminExact, Plain, "GET", "/admin/", D, Paths: CaseSensitive),
        new(DenyAdminExact, Plain, "GET", "/admin/", A, Paths: SlashExact),
        new(DenyAdminExact, Plain, "GET", "/ADMIN", D, Paths: SlashExact),
        new(DenyAdminOnly, Plain, "GET", "/admin/", D), // "/admin*" is a plain prefix: "/admin", "/admin/", "/administrator"
        new(DenyAdminOnly, Plain, "GET", "/administrator", D),
        new(DenyAdminOnly, Plain, "GET", "/ADMIN/", D),
        new(DenyAdminOnly, Plain, "GET", "/admi", A),
        new(AllowPublicDir, Plain, "GET", "/public/x", A),
        new(AllowPublicDir, Plain, "GET", "/public/", A),
        new(AllowPublicDir, Plain, "GET", "/public", A),
        new(AllowPublicDir, Plain, "GET", "/PUBLIC/x", A),
        new(AllowPublicDir, Plain, "GET", "/publicity", D),
        new(AllowPublicDir, Plain, "GET", "/admin", D),
        new(AllowPublicDir, Plain, "GET", "/public", D, Paths: IstioPaths),
        new(AllowPublicDir, Plain, "GET", "/PUBLIC/x", D, Paths: IstioPaths),
        new(DenyCss, Plain, "GET", "/site.css", D),
        new(DenyCss, Plain, "GET", "/site.CSS", D),
        new(DenyCss, Plain, "GET", "/site.css/", D),
        new(DenyCss, Plain, "GET", "/site.cssx", A),
        new(DenyCss, Plain, "GET", "/site.CSS", A, Paths: IstioPaths),
        new(DenyCss, Plain, "GET", "/site.css/", A, Paths: IstioPaths),
        new(AllowDocsSlash, Plain, "GET", "/docs/", A),
        new(AllowDocsSlash, Plain, "GET", "/docs", A),
        new(AllowDocsSlash, Plain, "GET", "/docs/x", D),
        new(AllowDocsSlash, Plain, "GET", "/docs", D, Paths: IstioPaths),
        new(DenyAllButHealth, Plain, "GET", "/healthz", A),
        new(DenyAllButHealth, Plain, "GET", "/healthz/", A),
        new(DenyAllButHealth, Plain, "GET", "/HEALTHZ", A),
        new(DenyAllButHealth, Plain, "GET", "/healthz/x", D),
        new(DenyAllButHealth, Plain, "GET", "/x", D),
        new(DenyAllButHealth, Plain, "GET", "/healthz/", D, Paths: IstioPaths),
        new(DenyAllButHealth, Plain, "GET", "/HEALTHZ", D, Paths: IstioPaths),
        new(AllowRootOnly, Plain, "GET", "/", A),
        new(AllowRootOnly, Plain, "GET", "/.", A),
        new(AllowRootOnly, Plain, "GET", "//", A),
        new(AllowRootOnly, Plain, "GET", "/x", D),
        new(AllowRootOnly, Plain, "GET", "/?q=1", A),
    ];

    /// <summary>Dot segments, escapes, duplicate slashes, backslashes, NUL and path parameters under each normalization mode.</summary>
    private static IEnumerable<Row> PathNormalizationRows() =>
    [
        // Default (MERGE_SLASHES, escaped slashes refused): every spelling Kestrel routes to DELETE /orders/{id} is denied.
        new(DenyDeleteOrders, Plain, "DELETE", "/orders//1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "//orders/1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/./1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/%2e/1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/x/../orders/1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/x/%2E%2E/orders/1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/%6Frders/1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/%6frders/1", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/1;x", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/1?x=/../y", D),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders\\1", B), // '\' is no separator for Kestrel: refused, never read as '/'
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%2F1", B),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%2f1", B),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%5C1", B),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%5c1", B),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/%00", B),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/1%00", B),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders;x/1", A), // segment "orders;x": the router routes it nowhere
        new(DenyDeleteOrders, Plain, "DELETE", "orders/1", B),

        // KEEP_UNCHANGED (Istio's escaped-slash behaviour): %2F stays inside its segment, as Kestrel leaves it.
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%2F1", A, Paths: KeepEscapedSlashes),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/1%2F2", D, Paths: KeepEscapedSlashes),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/%00", B, Paths: KeepEscapedSlashes),
        new(DenyAdminOnly, Plain, "GET", "/admin%2F..", D, Paths: KeepEscapedSlashes),
        new(AllowPublicDir, Plain, "GET", "/public/..%2Fadmin", A, Paths: KeepEscapedSlashes),

        // DECODE_AND_MERGE_SLASHES: escaped slashes are decoded first, then normalized and merged.
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%2F1", D, Paths: DecodePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%2f1", D, Paths: DecodePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%5C1", B, Paths: DecodePaths), // decodes to '\', which Kestrel does not split on
        new(DenyDeleteOrders, Plain, "DELETE", "/x%2F..%2Forders/1", D, Paths: DecodePaths),
        new(AllowPublicDir, Plain, "GET", "/public%2F..%2Fadmin", D, Paths: DecodePaths),
        new(AllowPublicDir, Plain, "GET", "/public%2Fx", A, Paths: DecodePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/%00", B, Paths: DecodePaths),

        // A literal '\' (or %5C decoded): Envoy would read it as '/', Kestrel routes it inside one segment, so /x\..\public/secret
        // would be authorized as /public/secret while the router runs /{dir}/secret. Refused in every mode that would change it.
        new(AllowPublicDir, Plain, "GET", "/x\\..\\public/secret", B),
        new(AllowPublicDir, Plain, "GET", "/x\\..\\public/secret", B, Paths: BasePaths),
        new(AllowPublicDir, Plain, "GET", "/x\\..\\public/secret", B, Paths: IstioPaths),
        new(AllowPublicDir, Plain, "GET", "/x\\..\\public/secret", B, Paths: KeepEscapedSlashes),
        new(AllowPublicDir, Plain, "GET", "/x\\..\\public/secret", B, Paths: DecodePaths),
        new(AllowPublicDir, Plain, "GET", "/x%5C..%5Cpublic/secret", B, Paths: DecodePaths),
        new(AllowPublicDir, Plain, "GET", "/x%5C..%5Cpublic/secret", D, Paths: KeepEscapedSlashes), // kept encoded: one segment, as Kestrel routes it
        new(AllowPublicDir, Plain, "GET", "/x\\..\\public/secret", D, Paths: NonePaths), // NONE changes nothing: the path as received

        // BASE: no slash merging (the router does not merge either: //orders/1 routes nowhere).
        new(DenyDeleteOrders, Plain, "DELETE", "//orders/1", A, Paths: BasePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders//1", D, Paths: BasePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/x/../orders/1", D, Paths: BasePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/%6Frders/1", D, Paths: BasePaths),
        new(DenyAdminExact, Plain, "GET", "/admin//", A, Paths: BasePaths),

        // NONE: the path as received (query dropped). Istio's documented risk: Kestrel still resolves ../ and escapes.
        new(DenyDeleteOrders, Plain, "DELETE", "/x/../orders/1", A, Paths: NonePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/%6Frders/1", A, Paths: NonePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/./1", D, Paths: NonePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/1?x", D, Paths: NonePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders%2F1", B, Paths: NonePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/orders/%00", B, Paths: NonePaths),
        new(DenyDeleteOrders, Plain, "DELETE", "/Orders/1", D, Paths: NonePaths),
    ];

    /// <summary>request.headers[...]: names case-insensitive; a repeated header is matched as its values joined with ',' (Envoy).</summary>
    private static IEnumerable<Row> HeaderSpellingRows() =>
    [
        new(RoleHeaderExact, Plain, "GET", "/x", A, Headers: ["X-Role", "admin"]),
        new(RoleHeaderExact, Plain, "GET", "/x", A, Headers: ["X-ROLE", "admin"]),
        new(RoleHeaderExact, Plain, "GET", "/x", D, Headers: ["x-role", "Admin"]),
        new(RoleHeaderExact, Plain, "GET", "/x", D, Headers: ["x-role", "admin "]),
        new(RoleHeaderExact, Plain, "GET", "/x", D, Headers: ["x-role", "user", "x-role", "admin"]),
        new(RoleHeaderExact, Plain, "GET", "/x", D, Headers: ["x-role", "admin", "X-Role", "admin"]),
        new(RoleHeaderExact, Plain, "GET", "/x", D, Headers: ["x-role", ""]),
        new(TagsPrefix, Plain, "GET", "/x", A, Headers: ["x-tags", "a1", "x-tags", "b2"]),
        new(TagsPrefix, Plain, "GET", "/x", D, Headers: ["x-tags", "b2", "x-tags", "a1"]),
        new(TagsSuffix, Plain, "GET", "/x", A, Headers: ["x-tags", "a", "x-tags", "b"]),
        new(TagsSuffix, Plain, "GET", "/x", D, Headers: ["x-tags", "b", "x-tags", "a"]),
        new(DenyDebugHeader, Plain, "GET", "/x", D, Headers: ["X-Debug", "1"]),
        new(DenyDebugHeader, Plain, "GET", "/x", D, Headers: ["x-debug", ""]),
        new(DenyDebugHeader, Plain, "GET", "/x", A, Headers: ["x-debugger", "1"]),
        new(DenyDebugHeader, Plain, "GET", "/x", A),
        new(DenyProdEnv, Plain, "GET", "/x", D, Headers: ["x-env", "prod"]),
        new(DenyProdEnv, Plain, "GET", "/x", A, Headers: ["x-env", "PROD"]),
        new(DenyProdEnv, Plain, "GET", "/x", A, Headers: ["x-env", "prod", "x-env", "dev"]), // Envoy matches "prod,dev"
        new(NotProdEnv, Plain, "GET", "/x", A, Headers: ["x-env", "prod", "x-env", "dev"]),
    ];
}
