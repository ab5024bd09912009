using System.Globalization;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;

namespace Mesh.Sidecar.Tcp;

/// <summary>The tunnels' Kestrel endpoints, each with the line that announces it.</summary>
internal sealed class TcpTunnelListeners
{
    private readonly Lock _gate = new();
    private readonly List<(string Prefix, ListenOptions? Listen)> _listeners = [];

    /// <summary>Adds a tunnel's endpoint; null for a tunnel not opened, whose line is the prefix alone (it says why).</summary>
    public void Add(string prefix, ListenOptions? listen)
    {
        lock (_gate)
        {
            _listeners.Add((prefix, listen));
        }
    }

    /// <summary>One line per tunnel, <c>&lt;prefix&gt; listening on &lt;ip:port&gt;</c> with the bound port.</summary>
    public IReadOnlyList<string> Lines()
    {
        lock (_gate)
        {
            return [.. _listeners.Select(l => l.Listen is null ? l.Prefix : string.Create(CultureInfo.InvariantCulture, $"{l.Prefix} listening on {l.Listen.IPEndPoint}"))];
        }
    }
}

/// <summary>Writes the tunnels' lines to stdout once Kestrel has bound them, so tests and scripts find ephemeral ports.</summary>
internal sealed class TcpTunnelAnnouncer(TcpTunnelListeners listeners, IHostApplicationLifetime lifetime) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(() =>
        {
            foreach (var line in listeners.Lines())
            {
                Console.Out.WriteLine(line);
            }

            Console.Out.Flush();
        });
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
