using Mesh.Sidecar.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Mesh.Sidecar.Tests.Hosting;

/// <summary>
/// The sidecar processes request I/O on the socket event threads unless told not to, and never overrides the runtime
/// switch an operator set. (The runtime reads that switch once per process: the integration tests check that a real
/// sidecar runs with it, docs/performance.md measures it.)
/// </summary>
[Collection(ProcessEnvironmentTestGroup.Name)]
public sealed class SidecarInlineIoTests
{
    private static readonly string[] Required = ["--app-port", "8080", "--Mesh:ControlPlane:Address=http://127.0.0.1:15010"];

    [Theory]
    [InlineData(new string[0], true)]
    [InlineData(new[] { "--inline-io", "false" }, false)]
    [InlineData(new[] { "--Sidecar:InlineIo=true" }, true)]
    public async Task Build_KestrelSchedulesInlineUnlessDisabled_ProcessEnvironmentUntouched(string[] extra, bool inline)
    {
        var before = Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable);
        await using var app = SidecarHost.Build([.. Required, .. extra]);

        Assert.Equal(inline, app.Services.GetRequiredService<IOptions<SocketTransportOptions>>().Value.UnsafePreferInlineScheduling);
        Assert.Equal(before, Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable));
    }

    [Theory]
    [InlineData(null, true, "1")]
    [InlineData(null, false, null)]
    [InlineData("0", true, "0")]
    [InlineData("1", false, "1")]
    public void ApplyToProcess_SetsTheRuntimeSwitchOnlyWhenInlineAndUnset(string? operatorValue, bool inline, string? expected)
    {
        var before = Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable);
        try
        {
            Environment.SetEnvironmentVariable(SidecarInlineIo.SocketsVariable, operatorValue);

            SidecarInlineIo.ApplyToProcess(inline);

            Assert.Equal(expected, Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SidecarInlineIo.SocketsVariable, before);
        }
    }
}

/// <summary>Tests that set the process's environment run alone: another test's host would read it meanwhile.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessEnvironmentTestGroup
{
    public const string Name = "Process environment";
}
