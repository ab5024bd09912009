using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Sidecar;

/// <summary>What the TCP tunnel tests need: an echo app, sidecar processes, openssl, and raw sockets.</summary>
internal static class TcpTunnelKit
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    /// <summary>Starts a mesh-sidecar process with the control plane's secure settings for <paramref name="serviceAccount"/> plus <paramref name="settings"/>.</summary>
    public static async Task<ChildProcess> StartSidecarAsync(ControlPlaneProcess controlPlane, string name, string serviceAccount, IReadOnlyDictionary<string, string?> settings)
    {
        var environment = controlPlane.SecureEnvironment(await controlPlane.MintTokenAsync(serviceAccount));
        environment["Mesh__Service"] = serviceAccount;
        foreach (var (key, value) in settings)
        {
            environment[key] = value;
        }

        // The sidecar's HTTP listeners on ephemeral loopback ports (the starter's defaults), so two sidecars share one machine.
        var appPort = int.Parse(settings["Sidecar__AppPort"]!, System.Globalization.CultureInfo.InvariantCulture);
        return (await SidecarProcesses.StartSidecarAsync(Repository.App("mesh-sidecar"), name, appPort, environment)).Process;
    }

    /// <summary>Waits for the sidecar's <c>Sidecar tcp … listening on ip:port</c> line and returns the port.</summary>
    public static async Task<int> WaitForTunnelAsync(ChildProcess sidecar, string prefix)
    {
        var match = await sidecar.WaitForLineAsync(System.Text.RegularExpressions.Regex.Escape(prefix) + @" listening on 127\.0\.0\.1:(\d+)", Deadline);
        return int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Sends <paramref name="payload"/> to 127.0.0.1:<paramref name="port"/>, half-closes, and reads until the other side
    /// closes; writing and reading run together so that a large echo never stalls on full buffers.
    /// </summary>
    public static async Task<byte[]> ExchangeAsync(int port, byte[] payload, CancellationToken cancellationToken)
    {
        using var client = new TcpClient(AddressFamily.InterNetwork) { NoDelay = true };
        await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken);
        var stream = client.GetStream();
        var write = Task.Run(
            async () =>
            {
                for (var offset = 0; offset < payload.Length; offset += 64 * 1024)
                {
                    await stream.WriteAsync(payload.AsMemory(offset, Math.Min(64 * 1024, payload.Length - offset)), cancellationToken);
                }

                client.Client.Shutdown(SocketShutdown.Send);
            },
            cancellationToken);
        using var received = new MemoryStream();
        var buffer = new byte[32 * 1024];
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken)) > 0)
        {
            received.Write(buffer, 0, read);
        }

        try
        {
            await write;
        }
        catch (Exception ex) when (ex is IOException or SocketException)
        {
            // The far side closed before taking everything: the caller compares what came back.
        }

        return received.ToArray();
    }

    /// <summary>One echo through the tunnel; false (not an exception) while the tunnel is not ready yet.</summary>
    public static async Task<bool> EchoesAsync(int port, string text)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            var answer = await ExchangeAsync(port, Encoding.ASCII.GetBytes(text), timeout.Token);
            return Encoding.ASCII.GetString(answer) == text;
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException)
        {
            return false;
        }
    }

    public sealed record ToolResult(int ExitCode, string Output);

    /// <summary>
    /// Runs <c>openssl s_client</c> with <paramref name="args"/>, writes <paramref name="input"/>, and waits until the output
    /// contains <paramref name="until"/> (then stops it) or openssl exits by itself.
    /// </summary>
    public static async Task<ToolResult> OpenSslClientAsync(string[] args, string input, string? until)
    {
        var start = new ProcessStartInfo("openssl")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in (string[])["s_client", .. args])
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnData(object sender, DataReceivedEventArgs e)
        {
            if (e.Data is null)
            {
                return;
            }

            lock (output)
            {
                output.AppendLine(e.Data);
                if (until is not null && output.ToString().Contains(until, StringComparison.Ordinal))
                {
                    seen.TrySetResult();
                }
            }
        }

        process.OutputDataReceived += OnData;
        process.ErrorDataReceived += OnData;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await process.StandardInput.WriteAsync(input);
            await process.StandardInput.FlushAsync();
            if (until is null)
            {
                process.StandardInput.Close();
            }
        }
        catch (IOException) when (process.HasExited || until is null)
        {
            // A refused handshake can end openssl before it reads its input (broken pipe): the output says what happened.
        }

        var exited = process.WaitForExitAsync();
        var deadline = Task.Delay(Deadline);
        var finished = await Task.WhenAny(seen.Task, exited, deadline);
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }

        lock (output)
        {
            Assert.True(finished != deadline, $"openssl s_client {string.Join(' ', args)} did not finish within {Deadline.TotalSeconds:0} s:\n{output}");
            return new ToolResult(process.ExitCode, output.ToString());
        }
    }
}

/// <summary>
/// The app behind the server's sidecar: a TCP echo on 127.0.0.1 (port 0) that sends back every byte as it arrives and
/// closes its side when the peer has. Counts connections and bytes, so a test can prove nothing reached it.
/// </summary>
internal sealed class TcpEchoServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private int _connections;
    private long _bytes;

    public TcpEchoServer()
    {
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>
    /// Gets the connections that brought bytes. A connect-and-close carries none: the sidecar's app check makes one every
    /// 2 s (as a kubelet tcpSocket readiness probe does), and it is not traffic reaching the app.
    /// </summary>
    public int Connections => Volatile.Read(ref _connections);

    public long Bytes => Interlocked.Read(ref _bytes);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(() => EchoAsync(socket));
        }
    }

    private async Task EchoAsync(Socket socket)
    {
        using (socket)
        {
            var buffer = new byte[16 * 1024];
            try
            {
                int read;
                var counted = false;
                while ((read = await socket.ReceiveAsync(buffer, _stop.Token)) > 0)
                {
                    if (!counted)
                    {
                        Interlocked.Increment(ref _connections);
                        counted = true;
                    }

                    Interlocked.Add(ref _bytes, read);
                    await socket.SendAsync(buffer.AsMemory(0, read), _stop.Token);
                }

                socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        }
    }
}
