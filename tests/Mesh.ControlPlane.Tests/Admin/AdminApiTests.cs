using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Mesh.ControlPlane.Admin;
using Mesh.ControlPlane.Tests.Security;
using Mesh.ControlPlane.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.ControlPlane.Tests.Admin;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class AdminApiTests
{
    private static readonly object OrdersRequest = new { @namespace = "default", serviceAccount = "orders" };

    [Fact]
    public async Task PostTokens_WithoutCredential_UnauthorizedNamingTheCredentialFile()
    {
        await using var cp = await SecureHost.StartAsync();
        using var anonymous = new HttpClient { BaseAddress = cp.Host.AdminAddress };

        using var response = await anonymous.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), OrdersRequest);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        var error = await Error(response);
        Assert.Contains("needs 'Authorization: Bearer <admin credential>'", error, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(cp.StateDirectory, AdminCredential.FileName), error, StringComparison.Ordinal);
        Assert.DoesNotContain(cp.AdminSecret, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Bearer", "wrong-credential-of-the-right-length-0123456789abcdef", "the admin credential is wrong")]
    [InlineData("Bearer", "", "must be 'Bearer <admin credential>'")]
    [InlineData("Basic", "YWRtaW46YWRtaW4=", "must be 'Bearer <admin credential>'")]
    public async Task PostTokens_WrongCredential_Unauthorized(string scheme, string value, string expected)
    {
        await using var cp = await SecureHost.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(cp.Host.AdminAddress, "/tokens")) { Content = JsonContent.Create(OrdersRequest) };
        request.Headers.TryAddWithoutValidation("Authorization", $"{scheme} {value}".Trim());
        using var http = new HttpClient();

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains(expected, await Error(response), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostTokens_CredentialWithExtraCharacter_Unauthorized()
    {
        await using var cp = await SecureHost.StartAsync();
        using var http = new HttpClient { BaseAddress = cp.Host.AdminAddress };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", cp.AdminSecret + "x");

        using var response = await http.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), OrdersRequest);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact]
    public async Task AdminCredential_File_OwnerOnlyReusedAcrossRestartsAndNeverLogged()
    {
        var root = SecureHost.NewRoot();
        var logs = new LogSink();
        try
        {
            string first;
            await using (var cp = await SecureHost.StartAsync(root, ["--Logging:LogLevel:Default=Trace"], false, s => s.AddSingleton<ILoggerProvider>(logs)))
            {
                first = cp.AdminSecret;
                var path = Path.Combine(cp.StateDirectory, AdminCredential.FileName);
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
                Assert.True(first.Length >= 43, "256 random bits, base64url");
                using var response = await cp.Admin.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), OrdersRequest);
                response.EnsureSuccessStatusCode();
            }

            await using (var again = await SecureHost.StartAsync(root, ["--Logging:LogLevel:Default=Trace"], false, s => s.AddSingleton<ILoggerProvider>(logs)))
            {
                Assert.Equal(first, again.AdminSecret);
                using var response = await again.Admin.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), OrdersRequest);
                response.EnsureSuccessStatusCode();
            }

            Assert.Contains(logs.Lines, l => l.Contains("Admin credential created", StringComparison.Ordinal));
            Assert.Contains(logs.Lines, l => l.Contains("Admin credential loaded", StringComparison.Ordinal));
            Assert.DoesNotContain(logs.Lines, l => l.Contains(first, StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task Start_AdminCredentialReadableByOthers_FailsNamingTheFile()
    {
        var root = SecureHost.NewRoot();
        try
        {
            await (await SecureHost.StartAsync(root)).DisposeAsync();
            var path = Path.Combine(root, "state", AdminCredential.FileName);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);

            var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => SecureHost.StartAsync(root));

            Assert.Contains(path, ex.Message, StringComparison.Ordinal);
            Assert.Contains("chmod 600", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("attacker.example")]
    [InlineData("localhost")]
    [InlineData("127.0.0.1.nip.io")]
    [InlineData("127.0.0.1:1")]
    public async Task PostTokens_OtherHostHeader_MisdirectedEvenWithCredential(string host)
    {
        await using var cp = await SecureHost.StartAsync();
        var port = cp.Host.AdminAddress.Port;

        using var response = await cp.Admin.SendAsync(WithHost(HttpMethod.Post, cp, "/tokens", host.Contains(':', StringComparison.Ordinal) ? host : $"{host}:{port}"));

        Assert.Equal(HttpStatusCode.MisdirectedRequest, response.StatusCode);
        Assert.Contains($"answers only to Host '127.0.0.1:{port}' (ControlPlane:AdminAddress)", await Error(response), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DebugDump_OtherHostHeader_Misdirected_ReadinessAndBundleStayOpen()
    {
        await using var cp = await SecureHost.StartAsync();
        var rebound = $"attacker.example:{cp.Host.AdminAddress.Port}";
        using var anonymous = new HttpClient();

        using var dump = await anonymous.SendAsync(WithHost(HttpMethod.Get, cp, "/debug/config_dump", rebound));
        using var clients = await anonymous.SendAsync(WithHost(HttpMethod.Get, cp, "/debug/clients", rebound));
        using var ready = await anonymous.SendAsync(WithHost(HttpMethod.Get, cp, "/healthz/ready", rebound));
        using var bundle = await anonymous.SendAsync(WithHost(HttpMethod.Get, cp, "/ca/bundle.pem", rebound));
        using var ownDump = await anonymous.GetAsync(new Uri(cp.Host.AdminAddress, "/debug/config_dump"));

        Assert.Equal(HttpStatusCode.MisdirectedRequest, dump.StatusCode);
        Assert.Equal(HttpStatusCode.MisdirectedRequest, clients.StatusCode);
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal(HttpStatusCode.OK, bundle.StatusCode);
        Assert.Equal(HttpStatusCode.OK, ownDump.StatusCode);
    }

    [Theory]
    [InlineData("http://0.0.0.0:15014", "192.168.1.7:15014", true)]
    [InlineData("http://0.0.0.0:15014", "evil.example:15014", false)]
    [InlineData("http://localhost:15014", "localhost:15014", true)]
    [InlineData("http://localhost:15014", "127.0.0.1:15014", false)]
    [InlineData("http://127.0.0.1:80", "127.0.0.1", true)]
    [InlineData("http://127.0.0.1:15014", "", false)]
    public void CheckHost_Cases(string adminAddress, string host, bool allowed)
    {
        var error = AdminEndpoints.CheckHost(new Microsoft.AspNetCore.Http.HostString(host), new Uri(adminAddress), new Uri(adminAddress).Port);

        Assert.Equal(allowed, error is null);
    }

    private static HttpRequestMessage WithHost(HttpMethod method, SecureHost cp, string path, string host)
    {
        var request = new HttpRequestMessage(method, new Uri(cp.Host.AdminAddress, path));
        request.Headers.Host = host;
        if (method == HttpMethod.Post)
        {
            request.Content = JsonContent.Create(OrdersRequest);
        }

        return request;
    }

    private static async Task<string> Error(HttpResponseMessage response)
    {
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return body.RootElement.GetProperty("error").GetString()!;
    }
}
