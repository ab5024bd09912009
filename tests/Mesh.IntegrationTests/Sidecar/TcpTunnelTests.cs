using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.IntegrationTests.Security;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Sidecar;

/// <summary>
/// Opaque TCP through two real sidecar processes: an app's connection to its sidecar's outbound tunnel port travels over
/// mesh mTLS to the server sidecar's inbound tunnel (a mesh port, STRICT here, registered under the ServiceEntry port's
/// name) and on to a TCP echo app. The attacker's paths go straight at the inbound tunnel port with openssl and sockets.
/// </summary>
public sealed class TcpTunnelTests(ITestOutputHelper output)
{
    private const string Config = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: echo, namespace: default}
        spec:
          hosts: [echo.default.svc.cluster.local]
          ports:
            - {number: 9000, name: tcp-echo, protocol: TCP}
          resolution: STATIC
          workloadSelector:
            labels: {app: echo}
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: echo-strict, namespace: default}
        spec:
          selector:
            matchLabels: {app: echo}
          mtls: {mode: STRICT}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: echo-allow-tcp-client, namespace: default}
        spec:
          selector:
            matchLabels: {app: echo}
          action: ALLOW
          rules:
            - from:
                - source:
                    principals: [cluster.local/ns/default/sa/tcp-client]
        """;

    /// <summary>
    /// A sidecar that does not register and names no address the control plane knows it by (Mesh:Registration:Address, a
    /// Pod IP on Kubernetes) gets no inbound policy, so in secure mode it opens no inbound port, neither the
    /// HTTP one nor a TCP tunnel: before, any caller with a mesh certificate reached the app through it under no
    /// AuthorizationPolicy, a mesh-wide DENY included (found in review, 2026-12-05).
    /// </summary>
    [Fact]
    public async Task UnregisteredSidecar_OpensNoInboundPort_NeitherHttpNorTcp()
    {
        await using var echo = new TcpEchoServer();
        await using var mesh = await LocalMesh.StartAsync(output);
        using var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        var tunnelPort = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        await using var sidecar = await TcpTunnelKit.StartSidecarAsync(mesh.ControlPlane, "unregistered-sidecar", "echo", new Dictionary<string, string?>
        {
            ["Mesh__Registration__Enabled"] = "false",
            ["Sidecar__AppPort"] = echo.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Sidecar__InboundAddress"] = "127.0.0.1",
            ["Sidecar__Tcp__Inbound__0__Name"] = "tcp-echo",
            ["Sidecar__Tcp__Inbound__0__Port"] = tunnelPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Sidecar__Tcp__Inbound__0__AppPort"] = echo.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });

        await sidecar.WaitForLineAsync(System.Text.RegularExpressions.Regex.Escape("Sidecar inbound not opened: the sidecar does not register"), TcpTunnelKit.Deadline);
        await sidecar.WaitForLineAsync(System.Text.RegularExpressions.Regex.Escape("Sidecar tcp inbound tcp-echo not opened"), TcpTunnelKit.Deadline);
        using var client = new System.Net.Sockets.TcpClient(System.Net.Sockets.AddressFamily.InterNetwork);
        var refused = await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(() => client.ConnectAsync(System.Net.IPAddress.Loopback, tunnelPort));
        Assert.Equal(System.Net.Sockets.SocketError.ConnectionRefused, refused.SocketErrorCode);
        Assert.Equal(0, echo.Connections);
    }

    [Fact]
    public async Task Echo_ThroughTwoSidecars_ArrivesIntactOverMtls_AndTheInboundPortRefusesEveryoneElse()
    {
        SecurityKit.RequireTool("openssl");
        await using var echo = new TcpEchoServer();
        await using var mesh = await LocalMesh.StartAsync(output);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "tcp-echo.yaml"), Config);

        await using var server = await TcpTunnelKit.StartSidecarAsync(mesh.ControlPlane, "echo-sidecar", "echo", new Dictionary<string, string?>
        {
            ["Sidecar__AppPort"] = echo.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Sidecar__Tcp__Inbound__0__Name"] = "tcp-echo",
            ["Sidecar__Tcp__Inbound__0__Port"] = "0",
            ["Sidecar__Tcp__Inbound__0__AppPort"] = echo.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        await using var client = await TcpTunnelKit.StartSidecarAsync(mesh.ControlPlane, "tcp-client-sidecar", "tcp-client", new Dictionary<string, string?>
        {
            ["Mesh__Registration__Enabled"] = "false",
            ["Sidecar__AppPort"] = "1",
            ["Sidecar__Tcp__Outbound__0__Service"] = "echo",
            ["Sidecar__Tcp__Outbound__0__Port"] = "9000",
            ["Sidecar__Tcp__Outbound__0__LocalPort"] = "0",
            ["Sidecar__Tcp__Outbound__1__Service"] = "impostor",
            ["Sidecar__Tcp__Outbound__1__Port"] = "9000",
            ["Sidecar__Tcp__Outbound__1__LocalPort"] = "0",
        });
        try
        {
            var inbound = await TcpTunnelKit.WaitForTunnelAsync(server, "Sidecar tcp inbound tcp-echo");
            var outbound = await TcpTunnelKit.WaitForTunnelAsync(client, "Sidecar tcp outbound echo:9000");
            var impostorTunnel = await TcpTunnelKit.WaitForTunnelAsync(client, "Sidecar tcp outbound impostor:9000");

            // Ready when an echo makes the whole trip: the control plane has the registration, both sidecars their config.
            await Eventually.HoldsAsync(() => TcpTunnelKit.EchoesAsync(outbound, "ping"), "an echo through both sidecars", TcpTunnelKit.Deadline);

            // 1 MiB of random bytes, then a half-close: everything comes back, in order, and then the end of stream.
            var payload = RandomNumberGenerator.GetBytes(1024 * 1024);
            using (var timeout = new CancellationTokenSource(TcpTunnelKit.Deadline))
            {
                var answer = await TcpTunnelKit.ExchangeAsync(outbound, payload, timeout.Token);
                Assert.Equal(payload.Length, answer.Length);
                Assert.True(payload.AsSpan().SequenceEqual(answer), "the echoed bytes differ from the bytes sent");
            }

            output.WriteLine($"1 MiB echoed intact through {outbound} → {inbound} → {echo.Port}");

            // Half-closes while the echo flows back, one after another: the client sidecar passes each on as a FIN over mTLS
            // (a close_notify raced the relay's reads in OpenSSL), and the bytes and the FIN reach the server sidecar
            // together, often before its handshake has finished (which dropped the connection when that FIN cancelled it).
            for (var i = 0; i < 100; i++)
            {
                var chunk = RandomNumberGenerator.GetBytes(64 * 1024);
                using var timeout = new CancellationTokenSource(TcpTunnelKit.Deadline);
                var echoed = await TcpTunnelKit.ExchangeAsync(outbound, chunk, timeout.Token);
                Assert.True(chunk.AsSpan().SequenceEqual(echoed), $"half-close {i + 1} of 100: {echoed.Length} of {chunk.Length} bytes came back intact");
            }

            Assert.False(client.HasExited, "the client sidecar exited during the half-closes");

            // mTLS on the wire: openssl with the tcp-client identity's SVID speaks TLS to the inbound tunnel port and gets its echo.
            var tcpClientFiles = await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "tcp-client", Path.Combine(mesh.StateDirectory, "openssl-tcp-client"));
            var withCertificate = await TcpTunnelKit.OpenSslClientAsync(
                ["-connect", $"127.0.0.1:{inbound}", "-cert", tcpClientFiles.CertificateChain, "-key", tcpClientFiles.PrivateKey, "-CAfile", tcpClientFiles.RootCertificate, "-verify_return_error", "-quiet"],
                "hello-over-mtls\n",
                until: "hello-over-mtls");
            Assert.Contains("hello-over-mtls", withCertificate.Output, StringComparison.Ordinal);

            // Without a client certificate: the server presents the echo workload's SVID, demands a client certificate,
            // and the bytes never reach the app.
            var (connections, bytes) = (echo.Connections, echo.Bytes);
            var noCertificate = await TcpTunnelKit.OpenSslClientAsync(
                ["-connect", $"127.0.0.1:{inbound}", "-CAfile", tcpClientFiles.RootCertificate, "-showcerts"],
                "no-certificate\n",
                until: null);
            output.WriteLine(noCertificate.Output);
            var presented = X509Certificate2.CreateFromPem(noCertificate.Output.AsSpan(
                noCertificate.Output.IndexOf("-----BEGIN CERTIFICATE-----", StringComparison.Ordinal)));
            Assert.Equal([SecurityKit.SpiffeId("echo")], SecurityKit.UriSans(presented));
            Assert.DoesNotContain("no-certificate", noCertificate.Output, StringComparison.Ordinal);
            Assert.Equal((connections, bytes), (echo.Connections, echo.Bytes));

            // A valid SVID of another identity: the TLS handshake succeeds, the AuthorizationPolicy (principals: tcp-client)
            // refuses the connection, and nothing reaches the app.
            var intruderFiles = await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "intruder", Path.Combine(mesh.StateDirectory, "openssl-intruder"));
            var intruder = await TcpTunnelKit.OpenSslClientAsync(
                ["-connect", $"127.0.0.1:{inbound}", "-cert", intruderFiles.CertificateChain, "-key", intruderFiles.PrivateKey, "-CAfile", intruderFiles.RootCertificate],
                "intruder-bytes\n",
                until: null);
            Assert.DoesNotContain("\nintruder-bytes", intruder.Output, StringComparison.Ordinal);
            Assert.Equal((connections, bytes), (echo.Connections, echo.Bytes));

            // Plaintext under STRICT: the connection is closed before a byte reaches the app.
            using (var timeout = new CancellationTokenSource(TcpTunnelKit.Deadline))
            {
                byte[] plaintextAnswer;
                try
                {
                    plaintextAnswer = await TcpTunnelKit.ExchangeAsync(inbound, Encoding.ASCII.GetBytes("plaintext-bytes\n"), timeout.Token);
                }
                catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
                {
                    plaintextAnswer = [];
                }

                Assert.Empty(plaintextAnswer);
            }

            Assert.Equal((connections, bytes), (echo.Connections, echo.Bytes));

            // The allowed path still works after the attempts.
            Assert.True(await TcpTunnelKit.EchoesAsync(outbound, "still-here"));
            (connections, bytes) = (echo.Connections, echo.Bytes);

            // Secure naming, last (its endpoint takes over the inbound port's policy): a service whose endpoint is the echo
            // sidecar's inbound port but which must run as spiffe://…/sa/not-echo. The client sidecar sees the echo SVID,
            // refuses the handshake and sends nothing.
            await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "impostor.yaml"), $$"""
                apiVersion: networking.istio.io/v1
                kind: ServiceEntry
                metadata: {name: impostor, namespace: default}
                spec:
                  hosts: [impostor.default.svc.cluster.local]
                  ports:
                    - {number: 9000, name: tcp-echo, protocol: TCP}
                  resolution: STATIC
                  endpoints:
                    - {address: 127.0.0.1, ports: {tcp-echo: {{inbound}}}, serviceAccount: not-echo}
                ---
                apiVersion: networking.istio.io/v1
                kind: DestinationRule
                metadata: {name: impostor, namespace: default}
                spec:
                  host: impostor.default.svc.cluster.local
                  trafficPolicy:
                    tls: {mode: ISTIO_MUTUAL}
                """);
            const string refused = "presented: " + "spiffe://cluster.local/ns/default/sa/echo";
            await Eventually.HoldsAsync(
                async () =>
                {
                    Assert.False(await TcpTunnelKit.EchoesAsync(impostorTunnel, "to-the-impostor"), "the impostor tunnel carried bytes");
                    return client.Output.Contains(refused, StringComparison.Ordinal);
                },
                "the client sidecar to refuse the echo SVID for impostor",
                TcpTunnelKit.Deadline);
            Assert.Equal((connections, bytes), (echo.Connections, echo.Bytes));
        }
        finally
        {
            output.WriteLine($"----- echo-sidecar -----\n{server.Output}");
            output.WriteLine($"----- tcp-client-sidecar -----\n{client.Output}");
        }
    }
}
