using System.Text.RegularExpressions;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Benchmarks;

/// <summary>
/// The scale harness (benchmarks/Mesh.ScaleTest) at a tiny size, as a process: it starts its own control plane, and its
/// table row must show every client synced, reached by the change and resynced after the restart.
/// </summary>
public sealed class ScaleHarnessSmokeTests(ITestOutputHelper output)
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task ScaleHarness_TinyWildcardRunWithRestart_EveryClientSyncsGetsTheChangeAndResyncs()
    {
        var (code, text) = await RunHarnessAsync("--services", "5", "--endpoints", "2", "--clients", "3", "--changes", "1", "--window", "30", "--restart");

        Assert.True(code == 0, $"the harness exited with {code}:\n{text}");

        // mode | size | clients | sync p50/p99/max | not synced 0 | change p50/p99/max | missed 0 of 3 | … | restart …, 0 not resynced
        Assert.Matches(new Regex(@"^\| sotw-wildcard \| 5 × 2 \| 3 \| [\d.]+ / [\d.]+ / [\d.]+ \| 0 \| \d+ / \d+ / \d+ \| 0 / 3 \|.*\| [\d.]+ / [\d.]+ / [\d.]+, 0 \|$", RegexOptions.Multiline), text);
        Assert.Contains("distinct listeners received 5;", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ScaleHarness_TinyOnDemandRun_OnlySubscribersCountAndAllGetTheChange()
    {
        var (code, text) = await RunHarnessAsync("--services", "6", "--endpoints", "2", "--clients", "4", "--mode", "sotw-ondemand", "--subscribe", "2", "--changes", "1", "--window", "30");

        Assert.True(code == 0, $"the harness exited with {code}:\n{text}");
        var row = Regex.Match(text, @"^\| sotw-ondemand \(S=2\) \| 6 × 2 \| 4 \| [\d.]+ / [\d.]+ / [\d.]+ \| 0 \| \d+ / \d+ / \d+ \| 0 / (\d+) \|", RegexOptions.Multiline);
        Assert.True(row.Success, $"no on-demand row with every subscriber reached:\n{text}");

        // Only the clients that subscribed to the changed service are counted: at least one (the harness picks a service someone calls).
        Assert.InRange(int.Parse(row.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 1, 4);
    }

    [Fact]
    public async Task ScaleHarness_BadOptions_AreEachNamedAndNothingStarts()
    {
        var (code, text) = await RunHarnessAsync("--services", "0", "--mode", "bogus", "--window", "-1", "--sizes", "10by2", "--frobnicate");

        Assert.Equal(2, code);
        Assert.Contains("--services must be an integer from 1", text, StringComparison.Ordinal);
        Assert.Contains("--mode must be sotw-wildcard, sotw-ondemand, delta", text, StringComparison.Ordinal);
        Assert.Contains("--window must be a number of seconds, more than 0", text, StringComparison.Ordinal);
        Assert.Contains("--sizes: '10by2' must be <services>x<clients>", text, StringComparison.Ordinal);
        Assert.Contains("unknown option '--frobnicate'", text, StringComparison.Ordinal);
        Assert.DoesNotContain("control plane pid", text, StringComparison.Ordinal);
    }

    private async Task<(int Code, string Output)> RunHarnessAsync(params string[] args)
    {
        await using var harness = ChildProcess.StartDotnet("scale-harness", LaunchableApps.Paths["Mesh.ScaleTest"], args);
        int code;
        try
        {
            code = await harness.Exited.WaitAsync(RunTimeout);
        }
        finally
        {
            output.WriteLine(harness.Output);
        }

        return (code, harness.Output);
    }
}
