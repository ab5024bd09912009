using System.Net;
using Mesh.Client.Authorization;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// Real Kestrel on 127.0.0.1:0, requests written byte for byte. First the facts about ASP.NET Core routing that the
/// mesh's path defaults rest on (InboundPathSettings.Default); then the attack: a DENY on DELETE /orders/* tried with
/// every spelling, the app's own handler recording whether it ran.
/// </summary>
public sealed class KestrelRoutingTests
{
    /// <summary>What the router does with each spelling (no mesh): "GET:1" = the GET handler ran with id 1, else the status.</summary>
    [Theory]
    [InlineData("GET", "/orders/1", "GET:1")]
    [InlineData("GET", "/Orders/1", "GET:1")] // literals match case-insensitively
    [InlineData("GET", "/ORDERS/1/", "GET:1")] // one trailing slash is ignored
    [InlineData("GET", "/orders/1//", "404")] // ...but not two
    [InlineData("GET", "/orders//1", "404")] // an empty segment: no merging
    [InlineData("GET", "//orders/1", "404")]
    [InlineData("GET", "/orders/./1", "GET:1")] // Kestrel removes dot segments
    [InlineData("GET", "/orders/%2e/1", "GET:1")] // ...after decoding
    [InlineData("GET", "/x/../orders/1", "GET:1")]
    [InlineData("GET", "/%6Frders/1", "GET:1")] // Kestrel decodes escapes
    [InlineData("GET", "/orders/%31", "GET:1")]
    [InlineData("GET", "/orders%2F1", "404")] // ...except %2F, which stays inside its segment
    [InlineData("GET", "/orders%5C1", "404")] // %5C decodes to '\', which is no separator
    [InlineData("GET", "/orders\\1", "404")]
    [InlineData("GET", "/orders/1;x", "GET:1;x")] // ';' is an ordinary character
    [InlineData("GET", "/orders;x/1", "404")]
    [InlineData("GET", "/orders/%00", "400")] // Kestrel refuses an encoded NUL
    [InlineData("DELETE", "/orders/1", "DELETE:1")]
    [InlineData("delete", "/orders/1", "DELETE:1")] // methods match case-insensitively
    [InlineData("Delete", "/orders/1", "DELETE:1")]
    public async Task Router_Spelling_RoutesAsAspNetCoreDoes(string method, string target, string expected)
    {
        await using var app = await OrdersApp.StartAsync(mesh: null);

        var (status, _) = await RawHttp.SendAsync(app.Port, method, target);

        Assert.Equal(expected, app.Handled.TryDequeue(out var handled) ? handled : status.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(app.Handled.IsEmpty);
    }

    /// <summary>The regression of issue 7: each spelling of a denied DELETE gets 403 or 400, or is routed nowhere; the handler never runs.</summary>
    [Theory]
    [InlineData("DELETE", "/orders/1")]
    [InlineData("delete", "/orders/1")]
    [InlineData("Delete", "/orders/1")]
    [InlineData("DELETE", "/Orders/1")]
    [InlineData("DELETE", "/ORDERS/1/")]
    [InlineData("DELETE", "/orders/1/")]
    [InlineData("DELETE", "/orders//1")]
    [InlineData("DELETE", "//orders/1")]
    [InlineData("DELETE", "/orders/./1")]
    [InlineData("DELETE", "/orders/%2e/1")]
    [InlineData("DELETE", "/x/../orders/1")]
    [InlineData("DELETE", "/x/%2E%2E/orders/1")]
    [InlineData("DELETE", "/%6Frders/1")]
    [InlineData("DELETE", "/orders/%31")]
    [InlineData("DELETE", "/orders%2F1")]
    [InlineData("DELETE", "/orders%2f1")]
    [InlineData("DELETE", "/orders%5C1")]
    [InlineData("DELETE", "/orders\\1")]
    [InlineData("DELETE", "/orders/1;x")]
    [InlineData("DELETE", "/orders/1?x=/../y")]
    [InlineData("DELETE", "http://svc/orders/1")]
    [InlineData("DELETE", "/x#/../orders/1")]
    [InlineData("DELETE", "/orders/1#")]
    public async Task DenyDelete_AnySpelling_NeverReachesTheHandler(string method, string target)
    {
        await using var app = await OrdersApp.StartAsync(mesh: InboundPathSettings.Default);

        var (status, body) = await RawHttp.SendAsync(app.Port, method, target);

        Assert.True(app.Handled.IsEmpty, $"{method} {target} reached the app: {string.Join(", ", app.Handled)} (status {status})");
        Assert.Contains(status, new[] { 400, 403, 404 });
        if (status == 403)
        {
            Assert.Contains(MeshAuthorizationMiddleware.DeniedBody, body, StringComparison.Ordinal);
        }

        // The same app still serves what the policy allows: the handler is reachable, the DENY is what stopped it.
        var (allowed, _) = await RawHttp.SendAsync(app.Port, "GET", "/orders/1");
        Assert.Equal(200, allowed);
        Assert.True(app.Handled.TryDequeue(out var handled) && handled == "GET:1");
    }

    /// <summary>With Istio's own path handling (case- and slash-exact) the router's spellings do get through: why the defaults differ.</summary>
    [Theory]
    [InlineData("/Orders/1")]
    [InlineData("/ORDERS/1")]
    public async Task DenyDelete_IstioPathSettings_OtherCaseReachesTheHandler(string target)
    {
        await using var app = await OrdersApp.StartAsync(mesh: InboundPathSettings.Istio);

        var (status, _) = await RawHttp.SendAsync(app.Port, "DELETE", target);

        Assert.Equal(200, status);
        Assert.True(app.Handled.TryDequeue(out var handled) && handled == "DELETE:1");
    }

    /// <summary>
    /// The backslash attack (and the fragment one: Kestrel keeps a '#' in the path and resolves the dot segments after it,
    /// so <c>/public/a#/../../orders/1</c> would be authorized as /public/a and served by /orders/{id}): ALLOW only /public/*, and a route /{dir}/secret. Envoy would read <c>/x\..\public/secret</c> as
    /// /public/secret, while Kestrel routes it to /{dir}/secret with dir <c>x\..\public</c>: refused (400) under every path
    /// setting that would change the '\', denied where it is kept; the handler never runs.
    /// </summary>
    [Theory]
    [InlineData("/x\\..\\public/secret", "default")]
    [InlineData("/x\\..\\public/secret", "base")]
    [InlineData("/x\\..\\public/secret", "istio")]
    [InlineData("/x\\..\\public/secret", "decode")]
    [InlineData("/x%5C..%5Cpublic/secret", "default")]
    [InlineData("/x%5C..%5Cpublic/secret", "istio")]
    [InlineData("/x%5C..%5Cpublic/secret", "decode")]
    [InlineData("/x%5c..%5cpublic/secret", "decode")]
    [InlineData("/public/a#/../../orders/1", "default")]
    [InlineData("/public/a#/../../orders/1", "istio")]
    [InlineData("/public/secret#/../../../orders/1", "decode")]
    public async Task AllowPublic_BackslashSpelling_NeverReachesAnotherRoute(string target, string settings)
    {
        var paths = settings switch
        {
            "base" => new InboundPathSettings(PathNormalizationMode.Base),
            "istio" => InboundPathSettings.Istio,
            "decode" => new InboundPathSettings(PathNormalizationMode.DecodeAndMergeSlashes, RejectEscapedSlashes: false),
            _ => InboundPathSettings.Default,
        };
        await using var app = await OrdersApp.StartAsync(mesh: paths, allowPublic: true);

        var (status, _) = await RawHttp.SendAsync(app.Port, "GET", target);

        Assert.True(app.Handled.IsEmpty, $"{target} ({settings}) reached {string.Join(", ", app.Handled)} (status {status})");
        Assert.Contains(status, new[] { 400, 403 });

        // The route itself is reachable: the policy is what stopped the request.
        var (allowed, _) = await RawHttp.SendAsync(app.Port, "GET", "/public/secret");
        Assert.Equal(200, allowed);
        Assert.True(app.Handled.TryDequeue(out var handled) && handled == "SECRET:public");
    }

    private sealed class OrdersApp : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private OrdersApp(WebApplication app, int port)
        {
            _app = app;
            Port = port;
        }

        public int Port { get; }

        public System.Collections.Concurrent.ConcurrentQueue<string> Handled { get; } = new();

        /// <summary>Starts the app; with <paramref name="mesh"/>, behind the mesh authorization with a DENY on DELETE /orders/* (with <paramref name="allowPublic"/>: an ALLOW of /public/* only).</summary>
        public static async Task<OrdersApp> StartAsync(InboundPathSettings? mesh, bool allowPublic = false)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
            if (mesh is not null)
            {
                builder.Services.AddMeshAuthorization();
            }

            var app = builder.Build();
            OrdersApp? self = null;
            app.MapGet("/orders/{id}", (string id) => self!.Handled.Enqueue("GET:" + id));
            app.MapDelete("/orders/{id}", (string id) => self!.Handled.Enqueue("DELETE:" + id));
            app.MapGet("/{dir}/secret", (string dir) => self!.Handled.Enqueue("SECRET:" + dir));
            await app.StartAsync();
            var port = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single()).Port;
            self = new OrdersApp(app, port);
            if (mesh is not null)
            {
                AuthorizationPolicyModel[] policies = allowPublic
                    ? [Allow("public", Rule(to: [Operation(paths: ["/public/*"])]))]
                    : [Deny("no-delete", Rule(to: [Operation(methods: ["DELETE"], paths: ["/orders/*"])]))];
                Assert.True(InboundPolicyDecoder.TryDecode(Listener(policies, (uint)port, paths: mesh), out var policy, out var errors), string.Join("; ", errors));
                app.Services.GetRequiredService<InboundPolicyStore>().Replace([policy]);
            }

            return self;
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }
}
