using Mesh.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Mesh.IntegrationTests.Sidecar;

/// <summary>
/// Leaving the mesh: a sidecar stopped with SIGTERM under steady load leaves first, so no request fails; a sidecar whose
/// app stops answering takes its workload out of its service until the app answers again.
/// </summary>
public sealed class SidecarDrainTests(ITestOutputHelper output)
{
    [Fact]
    public async Task SigtermOneOfTwoSidecarsUnderSteadyLoad_ZeroFailedRequests_TrafficContinuesOnTheOther()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        SidecarKit.WriteServiceEntry(mesh, "legacy");
        await using var app1 = await TestApp.StartAsync("legacy-1");
        await using var app2 = await TestApp.StartAsync("legacy-2");
        await using var sidecar1 = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "legacy", "legacy-sidecar-1", app1.Port), output);
        await using var sidecar2 = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "legacy", "legacy-sidecar-2", app2.Port), output);
        await SidecarKit.WaitReadyAsync(sidecar1.Sidecar);
        await SidecarKit.WaitReadyAsync(sidecar2.Sidecar);
        await mesh.WaitForEndpointsAsync("legacy", 2);

        // No retries: a request sent to the leaving instance after it stopped listening would fail, so only the drain
        // (deregister, keep serving until callers learned it by EDS, then stop) keeps the count at zero.
        using var host = await mesh.CreateClientHostAsync(options => options.Resilience.MaxRetryAttempts = 0);
        await host.StartAsync();
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        await Eventually.HoldsAsync(async () =>
        {
            using var response = await client.GetAsync("http://legacy/hello");
            return response.IsSuccessStatusCode;
        }, "the client to reach legacy");

        // Bounded in count and time, but sized to outlast the drain (DrainDuration 5 s + Kestrel's stop) at this machine's
        // rate, so the load spans the moment the leaving instance stops listening; the test ends it once traffic moved on.
        using var stop = new CancellationTokenSource();
        var progress = LoadRun.Start(client, "http://legacy/hello", workers: 4, TimeSpan.FromSeconds(60), maxRequests: 60_000, TestApp.Marker, out var load, stop.Token);
        try
        {
            await Eventually.HoldsAsync(() => Task.FromResult(app1.Requests >= 50 && app2.Requests >= 50), "both instances to take load");
            await sidecar1.Sidecar.Process.StopAsync(TimeSpan.FromSeconds(40));
            output.WriteLine($"SIGTERMed {sidecar1.Sidecar.Process.Name}: exit code {await sidecar1.Sidecar.Process.Exited}; {progress.Sent} requests so far");
            Assert.Equal(0, await sidecar1.Sidecar.Process.Exited);
            Assert.Contains("Left the mesh; draining", sidecar1.Sidecar.Process.Output, StringComparison.Ordinal);
            Assert.False(load.IsCompleted, $"the load ended ({progress.Sent} requests) before the drain did: it must span the stop");

            // Traffic continues on the other instance after the first one is gone.
            var after = app2.Requests;
            await Eventually.HoldsAsync(() => Task.FromResult(app2.Requests >= after + 100), "100 more requests on legacy-2 after legacy-sidecar-1 stopped");
        }
        finally
        {
            await stop.CancelAsync();
        }

        var run = await load;
        output.WriteLine($"drain under load: {run}; split {string.Join(", ", run.Markers)}");
        Console.WriteLine($"[sidecar-drain] {run.Sent} requests sent, {run.Failures.Count} failed");
        Assert.Empty(run.Failures);
        Assert.Equal(2, run.Markers.Count);
        await host.StopAsync();
    }

    [Fact]
    public async Task AppStopsAnswering_WorkloadLeavesItsService_CallersGoToTheOtherInstance_BackWhenTheAppAnswers()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        SidecarKit.WriteServiceEntry(mesh, "legacy");
        await using var app1 = await TestApp.StartAsync("legacy-1");
        await using var app2 = await TestApp.StartAsync("legacy-2");
        await using var sidecar1 = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "legacy", "legacy-sidecar-1", app1.Port), output);
        await using var sidecar2 = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "legacy", "legacy-sidecar-2", app2.Port), output);
        await SidecarKit.WaitReadyAsync(sidecar1.Sidecar);
        await SidecarKit.WaitReadyAsync(sidecar2.Sidecar);
        await mesh.WaitForEndpointsAsync("legacy", 2);

        // No retries: while legacy-1 were still an endpoint, a request picked for it would fail (503 UF from its sidecar).
        using var host = await mesh.CreateClientHostAsync(options => options.Resilience.MaxRetryAttempts = 0);
        await host.StartAsync();
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        await Eventually.HoldsAsync(async () => (await AnswerAsync(client)).Contains("instance=legacy-1", StringComparison.Ordinal), "a call answered by legacy-1");

        // The app stops answering while its sidecar keeps running: as Kubernetes takes an unready Pod out of its Service's
        // endpoints, the sidecar takes its workload out of the mesh (three failed checks, 2 s apart), so callers stop
        // picking an instance that can only answer 503.
        await app1.StopAsync();
        await mesh.WaitForEndpointsAsync("legacy", 1);
        await Eventually.HoldsAsync(
            () => Task.FromResult(sidecar1.Sidecar.Process.Output.Contains("the workload leaves the mesh until the app answers again", StringComparison.Ordinal)),
            "legacy-sidecar-1 to say why its workload left");
        await Eventually.HoldsAsync(async () => await AllAnsweredByAsync(client, "legacy-2", 20), "20 calls in a row answered by legacy-2 once the client learned it by EDS");
        Assert.True(await AllAnsweredByAsync(client, "legacy-2", 100), "a call failed or reached legacy-1 after the client learned it left");

        // The app answers again, on its port: the workload registers again and takes calls.
        await using var restarted = await TestApp.StartAsync("legacy-1", port: app1.Port);
        await mesh.WaitForEndpointsAsync("legacy", 2);
        await Eventually.HoldsAsync(async () => (await AnswerAsync(client)).Contains("instance=legacy-1", StringComparison.Ordinal), "a call answered by legacy-1 after its app came back");
        Assert.True(restarted.Requests > 0);
        await host.StopAsync();
    }

    private static async Task<string> AnswerAsync(HttpClient client)
    {
        using var response = await client.GetAsync("http://legacy/hello");
        var body = await response.Content.ReadAsStringAsync();
        return response.IsSuccessStatusCode ? body : $"{(int)response.StatusCode}: {body}";
    }

    private async Task<bool> AllAnsweredByAsync(HttpClient client, string instance, int calls)
    {
        for (var i = 0; i < calls; i++)
        {
            var answer = await AnswerAsync(client);
            if (!answer.Contains($"instance={instance}\n", StringComparison.Ordinal))
            {
                output.WriteLine($"call {i + 1} of {calls}: {answer}");
                return false;
            }
        }

        return true;
    }
}
