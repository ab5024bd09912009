using Mesh.Sidecar.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Mesh.Sidecar.Tests.Hosting;

/// <summary>
/// The sidecar processes request I/O on the socket event threads unless told not to, and never overrides the runtime
/// switch an operator set. (The runtime reads that switch once per process, so these tests check what the sidecar asks
/// for; the sidecar processes the integration tests start run with it, and docs/performance.md measures it.)
/// </summary>
[Collection(ProcessEnvironmentTestGroup.Name)]
public sealed class SidecarInlineIoTests
{
    private static readonly string[] Required = ["--app-port", "8080", "--Mesh:ControlPlane:Address=http://127.0.0.1:15010"];

    [Fact]
    public async Task Build_ByDefault_KestrelAndSocketsCompleteInline()
    {
        var before = Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable);
        try
        {
            Environment.SetEnvironmentVariable(SidecarInlineIo.SocketsVariable, null);
            await using var app = SidecarHost.Build(Required);

            Assert.True(app.Services.GetRequiredService<IOptions<SocketTransportOptions>>().Value.UnsafePreferInlineScheduling);
            Assert.Equal("1", Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SidecarInlineIo.SocketsVariable, before);
        }
    }

    [Fact]
    public async Task Build_InlineIoFalse_ThreadPoolScheduling_SwitchUntouched()
    {
        var before = Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable);
        try
        {
            Environment.SetEnvironmentVariable(SidecarInlineIo.SocketsVariable, null);
            await using var app = SidecarHost.Build([.. Required, "--inline-io", "false"]);

            Assert.False(app.Services.GetRequiredService<IOptions<SocketTransportOptions>>().Value.UnsafePreferInlineScheduling);
            Assert.Null(Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SidecarInlineIo.SocketsVariable, before);
        }
    }

    [Fact]
    public async Task Build_OperatorSetTheSwitch_ItsValueStays()
    {
        var before = Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable);
        try
        {
            Environment.SetEnvironmentVariable(SidecarInlineIo.SocketsVariable, "0");
            await using var app = SidecarHost.Build(Required);

            Assert.Equal("0", Environment.GetEnvironmentVariable(SidecarInlineIo.SocketsVariable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SidecarInlineIo.SocketsVariable, before);
        }
    }
}

/// <summary>Tests that set the process's environment run alone: another test's host would read or change it meanwhile.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessEnvironmentTestGroup
{
    public const string Name = "Process environment";
}
