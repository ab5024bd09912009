using Mesh.Sidecar.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Mesh.Sidecar.Tests.Hosting;

/// <summary>A proxy does not log every request by default; the operator's Logging settings still decide.</summary>
public sealed class SidecarLoggingDefaultsTests
{
    [Theory]
    [InlineData(new string[0], false, false, true)]
    [InlineData(new[] { "--Logging:LogLevel:Microsoft.AspNetCore=Information", "--Logging:LogLevel:Yarp=Debug" }, true, true, true)]
    public async Task Build_PerRequestLogsOffByDefault_ConfigurationOverrides(string[] extra, bool hostingInfo, bool yarpInfo, bool sidecarInfo)
    {
        await using var app = SidecarHost.Build(["--app-port", "8080", "--Mesh:ControlPlane:Address=http://127.0.0.1:15010", .. extra]);
        var loggers = app.Services.GetRequiredService<ILoggerFactory>();

        Assert.Equal(hostingInfo, loggers.CreateLogger("Microsoft.AspNetCore.Hosting.Diagnostics").IsEnabled(LogLevel.Information));
        Assert.Equal(yarpInfo, loggers.CreateLogger("Yarp.ReverseProxy.Forwarder.HttpForwarder").IsEnabled(LogLevel.Information));
        Assert.Equal(sidecarInfo, loggers.CreateLogger("Mesh.Sidecar.Outbound.OutboundProxy").IsEnabled(LogLevel.Information));
        Assert.True(loggers.CreateLogger("Microsoft.AspNetCore.Server.Kestrel").IsEnabled(LogLevel.Warning));
    }

    /// <summary>A full console queue drops lines (the console logger then says how many) rather than block a socket event thread.</summary>
    [Theory]
    [InlineData(new string[0], ConsoleLoggerQueueFullMode.DropWrite)]
    [InlineData(new[] { "--Logging:Console:QueueFullMode=Wait" }, ConsoleLoggerQueueFullMode.Wait)]
    public async Task Build_ConsoleQueueDropsWhenFull_ConfigurationOverrides(string[] extra, ConsoleLoggerQueueFullMode expected)
    {
        await using var app = SidecarHost.Build(["--app-port", "8080", "--Mesh:ControlPlane:Address=http://127.0.0.1:15010", .. extra]);

        Assert.Equal(expected, app.Services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.QueueFullMode);
    }
}
