using System.Globalization;

namespace Mesh.LoadTest;

/// <summary>
/// CPU time, resident memory and open files of a process outside the load generator (a proxy, the backend), read from
/// /proc: the process itself and, for nginx, the workers its master forked (its children, read at each call).
/// </summary>
internal sealed class ProcessProbe(string name, int pid, bool withChildren = false)
{
    // /proc gives CPU times in clock ticks of USER_HZ, which is 100 on every Linux ABI .NET runs on: 10 ms resolution.
    private const double TicksPerSecond = 100;

    public string Name { get; } = name;

    /// <summary>Gets the CPU time (user + system, every thread, exited threads included) of the process and its children.</summary>
    public TimeSpan CpuTime()
    {
        long ticks = 0;
        foreach (var id in Pids())
        {
            // Fields after "(comm)" (which may hold spaces): state ppid pgrp session tty tpgid flags minflt cminflt majflt
            // cmajflt utime stime — utime and stime are the 14th and 15th fields of the line.
            var stat = Read($"/proc/{id}/stat");
            if (stat is null)
            {
                continue;
            }

            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            ticks += long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        }

        return TimeSpan.FromSeconds(ticks / TicksPerSecond);
    }

    /// <summary>Gets the resident set size (VmRSS) of the process plus its children's (pages they share count twice).</summary>
    public long RssBytes()
    {
        long kilobytes = 0;
        foreach (var id in Pids())
        {
            var line = Read($"/proc/{id}/status")?.Split('\n').FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            if (line is not null)
            {
                kilobytes += long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        return kilobytes * 1024;
    }

    /// <summary>Gets the open file descriptors (sockets included) of the process and its children.</summary>
    public int OpenFiles() => Pids().Sum(id =>
    {
        try
        {
            return Directory.GetFileSystemEntries($"/proc/{id}/fd").Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    });

    private static string? Read(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The process (or a worker) exited between listing and reading.
            return null;
        }
    }

    private IEnumerable<int> Pids()
    {
        yield return pid;
        if (!withChildren)
        {
            yield break;
        }

        var children = Read($"/proc/{pid}/task/{pid}/children") ?? string.Empty;
        foreach (var child in children.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            yield return int.Parse(child, CultureInfo.InvariantCulture);
        }
    }
}
