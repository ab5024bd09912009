using System.Globalization;
using System.Text.RegularExpressions;

namespace Mesh.ControlPlane.Tests.Support;

/// <summary>One scrape of a Prometheus text-format endpoint, parsed: every sample by series, and the declared types.</summary>
internal sealed partial class PrometheusText
{
    private readonly Dictionary<string, double> _samples = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _types = new(StringComparer.Ordinal);

    private PrometheusText(string text)
    {
        Text = text;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                _types[parts[2]] = parts[3];
                continue;
            }

            if (line.StartsWith('#'))
            {
                continue;
            }

            var match = SampleLine().Match(line);
            Assert.True(match.Success, $"not a Prometheus sample line: '{line}'");
            var labels = match.Groups["labels"].Success
                ? LabelPair().Matches(match.Groups["labels"].Value).Select(m => (m.Groups[1].Value, m.Groups[2].Value))
                : [];
            _samples[Key(match.Groups["name"].Value, labels)] = double.Parse(match.Groups["value"].Value, NumberStyles.Float, CultureInfo.InvariantCulture);
        }
    }

    public string Text { get; }

    /// <summary>Every series name in the scrape (histograms as their _bucket/_sum/_count series).</summary>
    public IEnumerable<string> SeriesNames => _samples.Keys.Select(k => k.Split('{')[0]).Distinct(StringComparer.Ordinal);

    public static async Task<PrometheusText> ScrapeAsync(HttpClient admin)
    {
        using var response = await admin.GetAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        return new PrometheusText(await response.Content.ReadAsStringAsync());
    }

    /// <summary>The declared type (<c># TYPE</c>) of <paramref name="name"/>, or null when it is not declared.</summary>
    public string? TypeOf(string name) => _types.GetValueOrDefault(name);

    /// <summary>The sample with exactly these labels, or null when the scrape has no such series.</summary>
    public double? Value(string name, params (string Name, string Value)[] labels) =>
        _samples.TryGetValue(Key(name, labels), out var value) ? value : null;

    /// <summary>The sample, or 0 when absent (a counter nothing has incremented yet is not exported).</summary>
    public double Count(string name, params (string Name, string Value)[] labels) => Value(name, labels) ?? 0;

    private static string Key(string name, IEnumerable<(string Name, string Value)> labels) =>
        name + "{" + string.Join(",", labels.OrderBy(l => l.Name, StringComparer.Ordinal).Select(l => $"{l.Name}=\"{l.Value}\"")) + "}";

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>\S+)( \d+)?$")]
    private static partial Regex SampleLine();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex LabelPair();
}
