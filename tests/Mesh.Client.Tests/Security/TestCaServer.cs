using System.Collections.Concurrent;
using System.Net;
using Grpc.Core;
using Mesh.Client.Security;
using Mesh.Xds.Istio.Auth.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests.Security;

/// <summary>
/// The control plane's secure port as the contract describes it, on real Kestrel HTTPS (h2) at 127.0.0.1:0:
/// IstioCertificateService/CreateCertificate (Bearer token first, then the SVID as client certificate) and
/// GET /ca/bundle.pem. Its server certificate is the control plane's SVID.
/// </summary>
internal sealed class TestCaServer : IAsyncDisposable
{
    public const string Token = "bootstrap-token";
    public const string ControlPlaneId = "spiffe://cluster.local/ns/mesh-system/sa/mesh-control-plane";

    private readonly WebApplication _app;

    private TestCaServer(WebApplication app, TestCa ca)
    {
        _app = app;
        Ca = ca;
        BundlePem = ca.RootPem;
    }

    public TestCa Ca { get; }

    public Uri Address { get; private set; } = null!;

    /// <summary>Gets how each CreateCertificate call authenticated: "token" or "cert:&lt;spiffe id&gt;".</summary>
    public ConcurrentQueue<string> Authentications { get; } = new();

    public volatile string BundlePem;

    public int BundleFetches;

    public static async Task<TestCaServer> StartAsync(TestCa ca, string serverId = ControlPlaneId)
    {
        var serverCertificate = ca.Issue([serverId], notBeforeOffset: TimeSpan.FromDays(-1), lifetime: TimeSpan.FromDays(30), dnsNames: ["localhost"]);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc();
        TestCaServer? self = null;
        builder.Services.AddSingleton(_ => self!);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            listen.UseHttps(new HttpsConnectionAdapterOptions
            {
                ServerCertificateChain = ca.Intermediate is null ? null : [ca.Intermediate],
                ServerCertificate = serverCertificate,
                ClientCertificateMode = ClientCertificateMode.AllowCertificate,

                // The CA checks the certificate itself (SvidValidator below), against its own bundle.
                ClientCertificateValidation = (certificate, _, _) => certificate is not null,
            });
        }));
        var app = builder.Build();
        app.MapGrpcService<CaService>();
        app.MapGet("/ca/bundle.pem", (TestCaServer server) =>
        {
            Interlocked.Increment(ref server.BundleFetches);
            return Results.Text(server.BundlePem, "application/x-pem-file");
        });
        self = new TestCaServer(app, ca);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        self.Address = new Uri($"https://127.0.0.1:{new Uri(address).Port}");
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class CaService(TestCaServer server) : IstioCertificateService.IstioCertificateServiceBase
    {
        public override Task<IstioCertificateResponse> CreateCertificate(IstioCertificateRequest request, ServerCallContext context)
        {
            string identity;
            var certificate = context.GetHttpContext().Connection.ClientCertificate;
            if (certificate is not null)
            {
                if (!SvidValidator.TryValidate(certificate, server.Ca.Intermediate is { } intermediate ? [intermediate] : [], server.Ca.Bundle, "cluster.local", server.Ca.Time.GetUtcNow(), out var id, out var error))
                {
                    throw new RpcException(new Status(StatusCode.Unauthenticated, error));
                }

                identity = id!.Value;
                server.Authentications.Enqueue($"cert:{identity}");
            }
            else if (context.RequestHeaders.GetValue("authorization") == $"Bearer {Token}")
            {
                identity = TestCa.Id("orders");
                server.Authentications.Enqueue("token");
            }
            else
            {
                throw new RpcException(new Status(StatusCode.Unauthenticated, "no valid bootstrap token or client certificate"));
            }

            var response = new IstioCertificateResponse();
            response.CertChain.Add(server.Ca.SignCsr(request.Csr, identity, TimeSpan.FromSeconds(request.ValidityDuration)));
            return Task.FromResult(response);
        }
    }
}
