using System.Diagnostics;
using Mesh.ControlPlane.Xds;
using Xunit.Abstractions;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>What a snapshot costs at 5,000 services × 10 endpoints (the production size), measured in process.</summary>
public sealed class SotwScaleTests(ITestOutputHelper output)
{
    [Fact]
    public void Translate_5000ServicesBy10Endpoints_Measured()
    {
        var model = ScaleModels.Mesh(5000, 10);
        var watch = Stopwatch.StartNew();
        var cold = XdsTranslator.Translate(model, 1);
        var coldTime = watch.Elapsed;
        watch.Restart();
        var warm = XdsTranslator.Translate(ScaleModels.Mesh(5000, 10, moved: 1), 2);
        var warmTime = watch.Elapsed;

        watch.Restart();
        var services = XdsTranslator.Resolve(model);
        var resolveTime = watch.Elapsed;
        watch.Restart();
        var inbound = InboundListenerTranslator.BuildAll(model, services, "istio-system");
        output.WriteLine($"Resolve {resolveTime.TotalMilliseconds:F0} ms, inbound listeners {watch.Elapsed.TotalMilliseconds:F0} ms ({inbound.Count})");
        output.WriteLine($"Translate 5000x10: cold {coldTime.TotalMilliseconds:F0} ms, again {warmTime.TotalMilliseconds:F0} ms; {cold.Clusters.Count} clusters");
        Assert.Equal(5000, warm.Endpoints.Count);
    }
}
