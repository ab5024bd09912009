using System.Globalization;
using System.Text.RegularExpressions;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// The demo exactly as a user runs it (`Mesh.Demo`, then `Mesh.Demo split N` from another terminal), on a copy of its
/// config folder: the canary and the A/B route show in its table, a blue-green switch both ways under its steady
/// traffic fails no request, and the Python service (ratings, behind its mesh-sidecar) serves with its identity.
/// </summary>
public sealed partial class DemoTrafficTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Demo_ShowsTheCanaryAndABRoute_AndABlueGreenSwitchBothWaysUnderLoadFailsNothing()
    {
        var config = Directory.CreateTempSubdirectory("mesh-demo-it-").FullName;
        try
        {
            foreach (var file in Directory.EnumerateFiles(Path.Combine(Repository.Root, "samples", "Mesh.Demo", "mesh-config")))
            {
                File.Copy(file, Path.Combine(config, Path.GetFileName(file)));
            }

            var demo = ChildProcess.StartDotnet("demo", Repository.App("Mesh.Demo"), ["--config", config, "--rps", "30", "--duration", "240"]);
            await using (demo)
            {
                // The shipped routes: 90/10 for everyone, beta users always on v2. A 10 s window of ~270 answers is too
                // small for a tight bound (the canary's ±3 % is measured over 2,000 requests elsewhere); this checks
                // that the demo shows a canary, not a 50/50 or a 100/0.
                var canary = await WaitForTableAsync(demo, 0, EveryoneSplit(), "a table with both versions over 200 answers", m => Count(m, 1) + Count(m, 2) >= 200);
                var (v1, v2) = (Count(canary, 1), Count(canary, 2));
                output.WriteLine($"demo canary (10 s window): v1 {v1}, v2 {v2} ({100.0 * v2 / (v1 + v2):0.0} % v2); {canary.Value}");
                Assert.InRange(v2 / (double)(v1 + v2), 0.02, 0.25);
                Assert.Matches(BetaAllOnV2(), canary.Value);

                // Blue-green: everything to v1, then everything to v2, each through the split command.
                await SplitAsync(config, 0);
                var mark = demo.Output.Length;
                await WaitForTableAsync(demo, mark, AllOn("v1"), "every answer from v1 after `split 0`");
                await SplitAsync(config, 100);
                mark = demo.Output.Length;
                var switched = await WaitForTableAsync(demo, mark, AllOn("v2"), "every answer from v2 after `split 100`");
                output.WriteLine($"after split 100: {switched.Value}");

                await demo.StopAsync(TimeSpan.FromSeconds(30));
            }

            var driver = DriverLine().Matches(demo.Output) is { Count: > 0 } lines
                ? lines[^1]
                : throw new Xunit.Sdk.XunitException($"The demo printed no traffic driver line. Output:\n{demo.Output}");
            output.WriteLine(driver.Value);
            Assert.True(long.Parse(driver.Groups[1].Value, CultureInfo.InvariantCulture) > 500, driver.Value);
            Assert.Equal("0", driver.Groups[3].Value);

            // ratings, the Python service behind its mesh-sidecar, has its row: its SPIFFE identity as presented over
            // mTLS, one registered instance, frontend's calls served without errors.
            var ratings = RatingsRow().Matches(demo.Output) is { Count: > 0 } rows
                ? rows[^1]
                : throw new Xunit.Sdk.XunitException($"The demo's table has no ratings row with sa/ratings. Output:\n{demo.Output}");
            output.WriteLine(ratings.Value);
            Assert.True(long.Parse(ratings.Groups[1].Value, CultureInfo.InvariantCulture) > 100, ratings.Value);
            Assert.Equal("0", ratings.Groups[2].Value);
        }
        finally
        {
            Directory.Delete(config, recursive: true);
        }
    }

    private async Task SplitAsync(string config, int percent)
    {
        await using var split = ChildProcess.StartDotnet($"split-{percent}", Repository.App("Mesh.Demo"), ["split", percent.ToString(CultureInfo.InvariantCulture), "--config", config]);
        Assert.Equal(0, await split.Exited.WaitAsync(Deadline));
        output.WriteLine(split.Output.Trim());
    }

    private static int Count(Match match, int group) => int.Parse(match.Groups[group].Value, CultureInfo.InvariantCulture);

    private static async Task<Match> WaitForTableAsync(ChildProcess demo, int from, Regex line, string what, Func<Match, bool>? enough = null)
    {
        Match? found = null;
        await Eventually.HoldsAsync(
            () =>
            {
                found = line.Matches(demo.Output[from..]).FirstOrDefault(m => enough?.Invoke(m) ?? true);
                return Task.FromResult(found is not null || demo.HasExited);
            },
            what,
            Deadline);
        return found is { Success: true } ? found : throw new Xunit.Sdk.XunitException($"The demo never showed {what}. Output:\n{demo.Output}");
    }

    [GeneratedRegex(@"everyone v1 +(\d+) \( *\d+%\)  v2 +(\d+) \( *\d+%\)  ·  beta users.*")]
    private static partial Regex EveryoneSplit();

    [GeneratedRegex(@"beta users \(x-demo-user: beta\) v2 +\d+ \(100%\)$", RegexOptions.Multiline)]
    private static partial Regex BetaAllOnV2();

    private static Regex AllOn(string version) => new($@"everyone {version} +\d+ \(100%\)  ·");

    [GeneratedRegex(@"traffic driver: (\d+) sent, (\d+) ok, (\d+) failed")]
    private static partial Regex DriverLine();

    [GeneratedRegex(@"^ratings +spiffe://cluster\.local/ns/default/sa/ratings +1 +(\d+) +(\d+) +\d+  ratings-1", RegexOptions.Multiline)]
    private static partial Regex RatingsRow();
}
