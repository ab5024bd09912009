using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Mesh.Samples.Processes;

/// <summary>
/// A .NET app (<c>dotnet app.dll</c>) or command started as a separate process whose output is captured line by line,
/// so a launcher or test can wait for a line (a ready message, Kestrel's "Now listening on") with a deadline.
/// </summary>
public sealed partial class ChildProcess : IAsyncDisposable
{
    private const int SigTerm = 15;
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly List<(Regex Pattern, TaskCompletionSource<Match> Found)> _waiters = [];
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<string, string>? _echo;

    private ChildProcess(string name, Process process, Action<string, string>? echo)
    {
        Name = name;
        _process = process;
        _echo = echo;
    }

    public string Name { get; }

    /// <summary>Gets the process id (kept after the process exited and was disposed).</summary>
    public int Id { get; private set; }

    public bool HasExited => _exited.Task.IsCompleted;

    public Task<int> Exited => _exited.Task;

    /// <summary>Gets everything the process wrote so far (stdout and stderr interleaved).</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Starts <c>dotnet <paramref name="dllPath"/></c> with the given arguments and environment.</summary>
    public static ChildProcess StartDotnet(
        string name,
        string dllPath,
        IEnumerable<string>? args = null,
        IReadOnlyDictionary<string, string?>? environment = null,
        string? workingDirectory = null,
        Action<string, string>? echo = null)
    {
        ArgumentNullException.ThrowIfNull(dllPath);
        if (!File.Exists(dllPath))
        {
            throw new FileNotFoundException($"{name}: {dllPath} does not exist; build the solution first (dotnet build Mesh.Client.sln).", dllPath);
        }

        return Start(name, "dotnet", [dllPath, .. args ?? []], environment, workingDirectory ?? Path.GetDirectoryName(dllPath)!, echo);
    }

    /// <summary>
    /// Starts <paramref name="fileName"/> (a command on PATH or a path) with the given arguments. Environment entries
    /// override the inherited environment; a null value removes the variable.
    /// </summary>
    public static ChildProcess Start(
        string name,
        string fileName,
        IEnumerable<string>? args = null,
        IReadOnlyDictionary<string, string?>? environment = null,
        string? workingDirectory = null,
        Action<string, string>? echo = null)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var arg in args ?? [])
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Development";
        info.Environment["Logging__Console__FormatterName"] = "simple";
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                info.Environment.Remove(key);
            }
            else
            {
                info.Environment[key] = value;
            }
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var child = new ChildProcess(name, process, echo);
        process.OutputDataReceived += (_, e) => child.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => child.OnLine(e.Data);
        process.Exited += (_, _) => child.OnExited();
        process.Start();
        child.Id = process.Id;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Waits for an output line matching <paramref name="pattern"/> (lines already written count).</summary>
    public async Task<Match> WaitForLineAsync(string pattern, TimeSpan timeout)
    {
        var regex = new Regex(pattern, RegexOptions.CultureInvariant);
        var found = new TaskCompletionSource<Match>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_output)
        {
            var existing = regex.Match(_output.ToString());
            if (existing.Success)
            {
                return existing;
            }

            _waiters.Add((regex, found));
        }

        var finished = await Task.WhenAny(found.Task, _exited.Task, Task.Delay(timeout)).ConfigureAwait(false);
        if (finished == found.Task)
        {
            return await found.Task.ConfigureAwait(false);
        }

        var reason = finished == _exited.Task ? $"exited with code {_exited.Task.Result}" : $"did not print it within {timeout.TotalSeconds:0} s";
        throw new TimeoutException($"{Name} (pid {Id}) was expected to print a line matching /{pattern}/ but {reason}. Output:\n{Output}");
    }

    /// <summary>Waits for Kestrel's "Now listening on: http://127.0.0.1:port" line and returns that address.</summary>
    public async Task<Uri> WaitForListeningAsync(TimeSpan timeout)
    {
        var match = await WaitForLineAsync(@"Now listening on: (http\S+)", timeout).ConfigureAwait(false);
        return new Uri(match.Groups[1].Value);
    }

    /// <summary>Asks the process to stop (SIGTERM, as Kubernetes and Ctrl+C do) and waits for it; kills it after <paramref name="timeout"/>.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        if (HasExited)
        {
            return;
        }

        if (OperatingSystem.IsWindows())
        {
            _process.Kill(entireProcessTree: true);
        }
        else
        {
            _ = Kill(_process.Id, SigTerm);
        }

        if (await Task.WhenAny(_exited.Task, Task.Delay(timeout)).ConfigureAwait(false) != _exited.Task)
        {
            _process.Kill(entireProcessTree: true);
            await _exited.Task.ConfigureAwait(false);
        }
    }

    /// <summary>Kills the process at once (SIGKILL): no deregistration, no goodbye, as in a crash.</summary>
    public async Task KillAsync()
    {
        if (!HasExited)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Exited between the check and the kill.
            }
        }

        await _exited.Task.ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        _process.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _echo?.Invoke(Name, line);
        lock (_output)
        {
            _output.AppendLine(line);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                var match = _waiters[i].Pattern.Match(line);
                if (match.Success)
                {
                    _waiters[i].Found.TrySetResult(match);
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    private void OnExited()
    {
        // Let the asynchronous readers drain before reporting the exit.
        _process.WaitForExit();
        _exited.TrySetResult(_process.ExitCode);
    }
}
