using System.Net;
using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests;

public sealed class ConfigTests(ITestOutputHelper output)
{
    [Fact]
    public async Task InvalidYamlDroppedIntoConfigFolder_IsReportedWithFileAndLine_AndLastGoodConfigKeepsServing()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1");
        using var client = new HttpClient { BaseAddress = frontend.Address };
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/")).StatusCode);

        // Line 5 has a port out of range; the other file's services must keep serving.
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "broken.yaml"), """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: payments, namespace: default}
            spec:
              hosts: [payments.default.svc.cluster.local]
              ports: [{number: 70000, name: http, protocol: HTTP}]
            """);
        var error = await Eventually.ReturnsAsync(FirstConfigErrorAsync, e => e is not null, "the control plane to report broken.yaml");
        output.WriteLine($"reported: {error}");
        Assert.Contains("broken.yaml", error, StringComparison.Ordinal);
        Assert.Matches(@"broken\.yaml\D*:?\s*\d+|""line"":\s*\d+", error);
        Assert.Contains("70000", error, StringComparison.Ordinal);

        var run = await LoadRun.RunAsync(client, "/", workers: 2, TimeSpan.FromSeconds(30), maxRequests: 40);
        Assert.Empty(run.Failures);
        Assert.Equal(LocalMesh.DemoServiceCount, await ServiceCountAsync());

        // Fixing the file clears the error and adds the service.
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "broken.yaml"), """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: payments, namespace: default}
            spec:
              hosts: [payments.default.svc.cluster.local]
              ports: [{number: 8080, name: http, protocol: HTTP}]
            """);
        await Eventually.ReturnsAsync(ServiceCountAsync, n => n == LocalMesh.DemoServiceCount + 1, "the fixed file to be accepted");
        Assert.Null(await FirstConfigErrorAsync());

        async Task<string?> FirstConfigErrorAsync()
        {
            using var dump = await mesh.ConfigDumpAsync();
            var errors = dump.RootElement.GetProperty("configErrors");
            return errors.GetArrayLength() == 0 ? null : errors[0].GetRawText();
        }

        async Task<int> ServiceCountAsync()
        {
            using var dump = await mesh.ConfigDumpAsync();
            return dump.RootElement.GetProperty("services").GetArrayLength();
        }
    }

    [Fact]
    public async Task ControlPlaneUnreachableAtStartup_AppStartsNotReady_AndMeshCallsFailFastNamingTheService()
    {
        await using var mesh = await LocalMesh.StartAsync(output);

        // Nothing listens on the discard port; the app must start anyway.
        var environment = mesh.ControlPlane.SecureEnvironment(await mesh.ControlPlane.MintTokenAsync("frontend"));
        environment["Mesh__ControlPlane__Address"] = "https://127.0.0.1:9";

        // Inbound ports fail closed (Strict) until the control plane speaks; this test calls in over plaintext.
        environment["Mesh__Inbound__Mode"] = "Permissive";

        // A service's ports answer 503 until the control plane sends their inbound policy, registered or not, so no app
        // code would run (FailClosedTests, InvalidConfigRestartTests). This one is a client only (no Mesh:Service): its port
        // is outside the mesh, and what is tested is the app's outbound call before the first config.
        environment["Mesh__Service"] = string.Empty;
        environment["Mesh__ServiceAccount"] = "frontend";
        await using var frontend = (await MeshProcesses.StartWorkloadAsync(
            Repository.App("Mesh.Samples.Frontend"),
            "frontend",
            "frontend-orphan",
            environment)).Process;
        var address = await frontend.WaitForListeningAsync(TimeSpan.FromSeconds(30));
        using var client = new HttpClient { BaseAddress = address };

        using var ready = await client.GetAsync("/healthz/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);

        var started = System.Diagnostics.Stopwatch.StartNew();
        using var call = await client.GetAsync("/");
        var body = await call.Content.ReadAsStringAsync();
        output.WriteLine($"{(int)call.StatusCode} after {started.ElapsedMilliseconds} ms: {body}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, call.StatusCode);
        Assert.Contains("orders", body, StringComparison.Ordinal);
        Assert.Contains("not yet synced", body, StringComparison.Ordinal);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"a call before sync must fail fast, took {started.Elapsed}");
        _ = JsonDocument.Parse(body);
    }
}
