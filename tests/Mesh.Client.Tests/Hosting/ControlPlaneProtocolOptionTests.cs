using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Tests.Hosting;

/// <summary><c>Mesh:ControlPlane:Protocol</c>: bound and validated by key like the other Mesh:ControlPlane options.</summary>
public class ControlPlaneProtocolOptionTests
{
    private const string Unreachable = "http://127.0.0.1:1";

    [Theory]
    [InlineData(null, "StateOfTheWorld")]
    [InlineData("Delta", "Delta")]
    [InlineData("delta", "delta")]
    [InlineData("StateOfTheWorld", "StateOfTheWorld")]
    public async Task StartAsync_Protocol_BoundWithStateOfTheWorldByDefault(string? value, string expected)
    {
        var settings = new Dictionary<string, string?> { ["Mesh:ControlPlane:Address"] = Unreachable };
        if (value is not null)
        {
            settings["Mesh:ControlPlane:Protocol"] = value;
        }

        using var host = Build(settings);
        await host.StartAsync();
        var options = host.Services.GetRequiredService<IOptions<ServiceMeshOptions>>().Value;
        await host.StopAsync();

        Assert.Equal(expected, options.ControlPlane.Protocol);
    }

    [Theory]
    [InlineData("Incremental")]
    [InlineData("SotW")]
    [InlineData("")]
    [InlineData("Delta ")]
    public async Task StartAsync_ProtocolNotAllowed_FailsNamingTheKeyAndTheAllowedValues(string value)
    {
        using var host = Build(new() { ["Mesh:ControlPlane:Address"] = Unreachable, ["Mesh:ControlPlane:Protocol"] = value });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains($"Mesh:ControlPlane:Protocol '{value}' must be StateOfTheWorld or Delta", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_ProtocolKeyMisspelt_FailsNamingTheUnknownKey()
    {
        using var host = Build(new() { ["Mesh:ControlPlane:Address"] = Unreachable, ["Mesh:ControlPlane:Protocl"] = "Delta" });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Mesh:ControlPlane:Protocl", error.Message, StringComparison.Ordinal);
    }

    private static IHost Build(Dictionary<string, string?> settings)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
        builder.AddServiceMesh();
        return builder.Build();
    }
}
