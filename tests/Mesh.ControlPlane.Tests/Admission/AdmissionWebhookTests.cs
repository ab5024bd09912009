using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Mesh.ControlPlane.Admission;
using Mesh.ControlPlane.Tests.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Admission;

/// <summary>The validating admission webhook over real HTTPS, reached by the name the API server uses and trusting only the mesh root.</summary>
public sealed class AdmissionWebhookTests : IAsyncLifetime
{
    private const string ServiceDns = "mesh-control-plane.mesh-system.svc";

    private SecureHost _cp = null!;

    public async Task InitializeAsync() =>
        _cp = await SecureHost.StartAsync(args: ["--ControlPlane:Kubernetes:WebhookAddress=https://127.0.0.1:0", "--ControlPlane:Kubernetes:SystemNamespace=mesh-system"]);

    public async Task DisposeAsync() => await _cp.DisposeAsync();

    private int Port => _cp.Host.WebhookAddress!.Port;

    [Theory]
    [InlineData("1.1")]
    [InlineData("2.0")]
    public async Task Validate_BadVirtualService_DeniedWithTheFolderFieldPath(string version)
    {
        using var client = Client(Version.Parse(version));

        using var response = await PostAsync(client, Review("uid-bad-1", "CREATE", "VirtualService", "shop", "reviews", BadVirtualService("reviews")));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Version.Parse(version), response.Version);
        var answer = await ReadAsync(response);
        Assert.Equal("admission.k8s.io/v1", (string?)answer["apiVersion"]);
        Assert.Equal("AdmissionReview", (string?)answer["kind"]);
        Assert.Equal("uid-bad-1", (string?)answer["response"]!["uid"]);
        Assert.False((bool)answer["response"]!["allowed"]!);
        Assert.Equal(400, (int)answer["response"]!["status"]!["code"]!);
        // The namespace came from the request alone (metadata has none), as on a namespaced create.
        Assert.Equal("VirtualService shop/reviews: spec.http[0].route[0].weight: weight -10 < 0", (string?)answer["response"]!["status"]!["message"]);
    }

    [Fact]
    public async Task Validate_GoodVirtualService_AllowedWithoutItsServiceEntry()
    {
        using var client = Client(HttpVersion.Version20);

        // The host is declared by no ServiceEntry: a cross-object rule, left to the source (objects arrive in any order).
        using var response = await PostAsync(client, Review("uid-good", "CREATE", "VirtualService", "shop", "reviews", GoodVirtualService("reviews")));

        var answer = await ReadAsync(response);
        Assert.Equal("uid-good", (string?)answer["response"]!["uid"]);
        Assert.True((bool)answer["response"]!["allowed"]!);
        Assert.Null(answer["response"]!["status"]);
    }

    [Fact]
    public async Task Validate_UpdateToBad_DeniedAndDeleteOfBad_Allowed()
    {
        using var client = Client(HttpVersion.Version20);

        var update = await ReadAsync(await PostAsync(client, Review("u-1", "UPDATE", "VirtualService", "shop", "reviews", BadVirtualService("reviews"), oldObject: GoodVirtualService("reviews"))));
        var delete = await ReadAsync(await PostAsync(client, Review("u-2", "DELETE", "VirtualService", "shop", "reviews", null, oldObject: BadVirtualService("reviews"))));

        Assert.False((bool)update["response"]!["allowed"]!);
        Assert.True((bool)delete["response"]!["allowed"]!);
        Assert.Equal("u-2", (string?)delete["response"]!["uid"]);
    }

    [Fact]
    public async Task Validate_SecurityPolicyWithBadField_DeniedNamingIt()
    {
        using var client = Client(HttpVersion.Version11);
        var policy = new JsonObject
        {
            ["apiVersion"] = "security.istio.io/v1",
            ["kind"] = "PeerAuthentication",
            ["metadata"] = new JsonObject { ["name"] = "strict", ["namespace"] = "shop" },
            ["spec"] = new JsonObject { ["mtls"] = new JsonObject { ["mode"] = "STRICTEST" } },
        };

        var answer = await ReadAsync(await PostAsync(client, Review("pa-1", "CREATE", "PeerAuthentication", "shop", "strict", policy, group: "security.istio.io")));

        Assert.False((bool)answer["response"]!["allowed"]!);
        Assert.StartsWith("PeerAuthentication shop/strict: spec.mtls.mode", (string?)answer["response"]!["status"]!["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_KindTheMeshDoesNotRead_Allowed()
    {
        using var client = Client(HttpVersion.Version20);
        var gateway = new JsonObject
        {
            ["apiVersion"] = "networking.istio.io/v1",
            ["kind"] = "Gateway",
            ["metadata"] = new JsonObject { ["name"] = "edge", ["namespace"] = "shop" },
            ["spec"] = new JsonObject { ["servers"] = "not even a list" },
        };

        var answer = await ReadAsync(await PostAsync(client, Review("gw-1", "CREATE", "Gateway", "shop", "edge", gateway)));

        Assert.True((bool)answer["response"]!["allowed"]!);
    }

    public static TheoryData<string, string, string> Malformed() => new()
    {
        { "application/json", "{not json", "the body is not JSON" },
        { "application/json", "[]", "the body must be a JSON object" },
        { "application/json", """{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}""", "apiVersion and kind must be admission.k8s.io/v1 and AdmissionReview" },
        { "application/json", """{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}""", "request is required and must be an object" },
        { "application/json", """{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}""", "request.uid is required" },
        { "application/json", """{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"PATCH","kind":{"kind":"VirtualService"}}}""", "request.operation must be CREATE, UPDATE, DELETE or CONNECT (got 'PATCH')" },
        { "application/json", """{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE"}}""", "request.kind must be an object with group, version and kind" },
        { "application/json", """{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE","kind":{"group":"networking.istio.io","version":"v1","kind":"VirtualService"},"object":"spec"}}""", "request.object is required for CREATE and must be an object" },
        { "application/json", new string('[', 200) + new string(']', 200), "the body is not JSON" },
        { "text/plain", "{}", "expected Content-Type application/json" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public async Task Validate_Malformed_400or415WithMessage(string contentType, string body, string expected)
    {
        using var client = Client(HttpVersion.Version11);
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);

        using var response = await client.PostAsync(Url("/validate"), content);

        Assert.Equal(contentType == "text/plain" ? HttpStatusCode.UnsupportedMediaType : HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(expected, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // The webhook is still there for the next request.
        var answer = await ReadAsync(await PostAsync(client, Review("after", "CREATE", "VirtualService", "shop", "reviews", GoodVirtualService("reviews"))));
        Assert.True((bool)answer["response"]!["allowed"]!);
    }

    [Fact]
    public async Task Validate_BodyOverTheLimit_413()
    {
        using var client = Client(HttpVersion.Version11);
        var padding = new string('x', (int)AdmissionWebhook.MaxRequestBytes);
        var review = Review("big", "CREATE", "VirtualService", "shop", "reviews", GoodVirtualService("reviews"));
        review["request"]!["object"]!["metadata"]!["annotations"] = new JsonObject { ["pad"] = padding };

        using var response = await PostAsync(client, review);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("exceeds the limit of 6291456 bytes", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WebhookPort_ServesOnlyValidate()
    {
        using var client = Client(HttpVersion.Version20);

        using var bundle = await client.GetAsync(Url("/ca/bundle.pem"));
        using var get = await client.GetAsync(Url("/validate"));
        using var grpc = new HttpRequestMessage(HttpMethod.Post, Url("/istio.v1.auth.IstioCertificateService/CreateCertificate"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(new byte[5]) { Headers = { ContentType = new("application/grpc") } },
        };
        using var ca = await client.SendAsync(grpc);

        Assert.Equal(HttpStatusCode.NotFound, bundle.StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, ca.StatusCode);
    }

    [Fact]
    public async Task Certificate_NamesTheServiceOnly_IssuedByTheMeshCa()
    {
        X509Certificate2? served = null;
        using var client = Client(HttpVersion.Version20, certificate => served = certificate);

        using var response = await PostAsync(client, Review("c-1", "CREATE", "VirtualService", "shop", "reviews", GoodVirtualService("reviews")));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.NotNull(served);
        var san = served.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal([ServiceDns], san.EnumerateDnsNames());
        Assert.Empty(san.EnumerateIPAddresses());

        // The name is checked: the same port reached as localhost fails the handshake.
        using var wrongName = Client(HttpVersion.Version20, host: "localhost");
        var ex = await Assert.ThrowsAsync<HttpRequestException>(() => wrongName.PostAsync(Url("/validate", "localhost"), new StringContent("{}")));
        Assert.IsType<System.Security.Authentication.AuthenticationException>(ex.InnerException);
    }

    [Fact]
    public async Task WebhookServiceName_ChangesTheCertificateName()
    {
        await using var cp = await SecureHost.StartAsync(args:
        [
            "--ControlPlane:Kubernetes:WebhookAddress=https://127.0.0.1:0",
            "--ControlPlane:Kubernetes:SystemNamespace=mesh",
            "--ControlPlane:Kubernetes:WebhookServiceName=validator",
        ]);
        X509Certificate2? served = null;
        using var client = Client(HttpVersion.Version11, certificate => served = certificate, "validator.mesh.svc", cp);

        using var response = await client.PostAsync(new Uri($"https://validator.mesh.svc:{cp.Host.WebhookAddress!.Port}/validate"), Json(Review("n", "DELETE", "VirtualService", "shop", "r", null)));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(["validator.mesh.svc"], served!.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single().EnumerateDnsNames());
    }

    [Fact]
    public async Task WebhookAddress_Unset_NoListener()
    {
        await using var cp = await SecureHost.StartAsync();

        Assert.Null(cp.Host.WebhookAddress);
    }

    [Fact]
    public async Task Curl_BadAndGoodVirtualService_AgainstTheMeshRoot()
    {
        var dir = Path.Combine(_cp.Root, "curl");
        Directory.CreateDirectory(dir);
        var root = Path.Combine(dir, "root.pem");
        await File.WriteAllTextAsync(root, _cp.Ca.BundlePem);
        var bad = Path.Combine(dir, "bad.json");
        var good = Path.Combine(dir, "good.json");
        await File.WriteAllTextAsync(bad, Review("curl-bad", "CREATE", "VirtualService", "shop", "reviews", BadVirtualService("reviews")).ToJsonString());
        await File.WriteAllTextAsync(good, Review("curl-good", "CREATE", "VirtualService", "shop", "reviews", GoodVirtualService("reviews")).ToJsonString());

        var denied = JsonNode.Parse(await CurlAsync(root, bad))!;
        var allowed = JsonNode.Parse(await CurlAsync(root, good))!;
        var malformed = await CurlAsync(root, root, expectStatus: "400");

        Assert.Equal("curl-bad", (string?)denied["response"]!["uid"]);
        Assert.False((bool)denied["response"]!["allowed"]!);
        Assert.Contains("spec.http[0].route[0].weight: weight -10 < 0", (string?)denied["response"]!["status"]!["message"], StringComparison.Ordinal);
        Assert.True((bool)allowed["response"]!["allowed"]!);
        Assert.Contains("the body is not JSON", malformed, StringComparison.Ordinal);
    }

    private async Task<string> CurlAsync(string root, string bodyFile, string expectStatus = "200")
    {
        var start = new ProcessStartInfo("curl")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            ArgumentList =
            {
                "--silent", "--show-error", "--http2", "--max-time", "30",
                "--cacert", root,
                "--resolve", $"{ServiceDns}:{Port}:127.0.0.1",
                "-H", "Content-Type: application/json",
                "--data-binary", "@" + bodyFile,
                "--write-out", "\n%{http_code}",
                $"https://{ServiceDns}:{Port}/validate",
            },
        };
        using var curl = Process.Start(start) ?? throw new InvalidOperationException("curl did not start");
        var output = await curl.StandardOutput.ReadToEndAsync();
        var error = await curl.StandardError.ReadToEndAsync();
        await curl.WaitForExitAsync();
        Assert.True(curl.ExitCode == 0, $"curl exited {curl.ExitCode}: {error}");
        var status = output[(output.LastIndexOf('\n') + 1)..];
        Assert.Equal(expectStatus, status);
        return output[..output.LastIndexOf('\n')];
    }

    private Uri Url(string path, string host = ServiceDns) => new($"https://{host}:{Port}{path}");

    /// <summary>
    /// A client that resolves any name to 127.0.0.1 and trusts only the mesh root, with the normal host-name check: what
    /// the API server does with the webhook configuration's caBundle.
    /// </summary>
    [Fact]
    public async Task Validate_MoreReviewsBeingReadThanTheCap_TheNextIsRefusedAtOnce_TheHeldOnesAnswered()
    {
        // In process, so no transport's own timeouts decide when a held body gives up: only the webhook's rule is tested.
        var webhook = new AdmissionWebhook(NullLogger<AdmissionWebhook>.Instance);
        var body = Encoding.UTF8.GetBytes(Review("held", "CREATE", "VirtualService", "shop", "reviews", GoodVirtualService("reviews")).ToJsonString());
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        // Reviews whose bodies stop half-way until released: each holds a slot while the webhook reads it.
        var held = Enumerable.Range(0, AdmissionWebhook.MaxReviewsInFlight).Select(_ => webhook.HandleAsync(Request(new HeldStream(body, release.Task)))).ToArray();
        Assert.All(held, h => Assert.False(h.IsCompleted));

        var refused = Assert.IsType<ContentHttpResult>(await webhook.HandleAsync(Request(new MemoryStream(body))));

        Assert.Equal(StatusCodes.Status429TooManyRequests, refused.StatusCode);
        Assert.Equal($"{AdmissionWebhook.MaxReviewsInFlight} AdmissionReviews are already being read; retry later", refused.ResponseContent!.Trim());
        release.SetResult();
        foreach (var answer in await Task.WhenAll(held))
        {
            Assert.Equal(StatusCodes.Status200OK, Assert.IsAssignableFrom<IStatusCodeHttpResult>(answer).StatusCode);
        }

        // The slots are free again.
        Assert.Equal(StatusCodes.Status200OK, Assert.IsAssignableFrom<IStatusCodeHttpResult>(await webhook.HandleAsync(Request(new MemoryStream(body)))).StatusCode);
    }

    private static DefaultHttpContext Request(Stream body)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "POST";
        context.Request.ContentType = "application/json";
        context.Request.Body = body;
        return context;
    }

    private HttpClient Client(Version version, Action<X509Certificate2>? onCertificate = null, string host = ServiceDns, SecureHost? cp = null)
    {
        cp ??= _cp;
        var roots = new X509Certificate2Collection();
        roots.ImportFromPem(cp.Ca.BundlePem);
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(IPAddress.Loopback, context.DnsEndPoint.Port, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
            SslOptions = new SslClientAuthenticationOptions
            {
                TargetHost = host,
                RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
                {
                    if (certificate is not X509Certificate2 server || chain is null || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
                    {
                        return false;
                    }

                    onCertificate?.Invoke(new X509Certificate2(server));
                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    chain.ChainPolicy.CustomTrustStore.AddRange(roots);
                    return chain.Build(server);
                },
            },
        };
        return new HttpClient(handler) { DefaultRequestVersion = version, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact, Timeout = TimeSpan.FromSeconds(30) };
    }

    private async Task<HttpResponseMessage> PostAsync(HttpClient client, JsonObject review) => await client.PostAsync(Url("/validate"), Json(review));

    private static StringContent Json(JsonObject review) => new(review.ToJsonString(), Encoding.UTF8, "application/json");

    private static async Task<JsonObject> ReadAsync(HttpResponseMessage response)
    {
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
            return (JsonObject)JsonNode.Parse(text)!;
        }
    }

    private static JsonObject Review(string uid, string operation, string kind, string ns, string name, JsonObject? obj, JsonObject? oldObject = null, string group = "networking.istio.io") => new()
    {
        ["apiVersion"] = "admission.k8s.io/v1",
        ["kind"] = "AdmissionReview",
        ["request"] = new JsonObject
        {
            ["uid"] = uid,
            ["kind"] = new JsonObject { ["group"] = group, ["version"] = "v1", ["kind"] = kind },
            ["resource"] = new JsonObject { ["group"] = group, ["version"] = "v1", ["resource"] = kind.ToLowerInvariant() + "s" },
            ["namespace"] = ns,
            ["name"] = name,
            ["operation"] = operation,
            ["userInfo"] = new JsonObject { ["username"] = "kubernetes-admin" },
            ["object"] = obj,
            ["oldObject"] = oldObject,
            ["dryRun"] = false,
        },
    };

    private static JsonObject GoodVirtualService(string name) => VirtualService(name, 100);

    private static JsonObject BadVirtualService(string name) => VirtualService(name, -10);

    /// <summary>A VirtualService as the API server sends it: server-set metadata, no metadata.namespace (the request carries it).</summary>
    private static JsonObject VirtualService(string name, int weight) => new()
    {
        ["apiVersion"] = "networking.istio.io/v1",
        ["kind"] = "VirtualService",
        ["metadata"] = new JsonObject
        {
            ["name"] = name,
            ["uid"] = "5c1f0e3a-0000-4000-8000-000000000001",
            ["generation"] = 1,
            ["creationTimestamp"] = "2026-12-03T22:00:00Z",
            ["annotations"] = new JsonObject { ["kubectl.kubernetes.io/last-applied-configuration"] = "{}" },
        },
        ["spec"] = new JsonObject
        {
            ["hosts"] = new JsonArray("reviews"),
            ["http"] = new JsonArray(new JsonObject
            {
                ["route"] = new JsonArray(new JsonObject
                {
                    ["destination"] = new JsonObject { ["host"] = "reviews" },
                    ["weight"] = weight,
                }),
            }),
        },
    };

    /// <summary>A request body that gives its first half, then the rest once <paramref name="release"/> completes.</summary>
    private sealed class HeldStream(byte[] bytes, Task release) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => bytes.Length;

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_position >= bytes.Length / 2)
            {
                await release.WaitAsync(cancellationToken);
            }

            var end = _position < bytes.Length / 2 ? bytes.Length / 2 : bytes.Length;
            var count = Math.Min(buffer.Length, end - _position);
            bytes.AsMemory(_position, count).CopyTo(buffer);
            _position += count;
            return count;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("read asynchronously");

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
