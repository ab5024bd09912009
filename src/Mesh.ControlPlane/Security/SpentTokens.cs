using System.Globalization;
using System.Text;
using Mesh.ControlPlane.Configuration;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// The <c>jti</c>s of single-use bootstrap tokens already spent, each kept until its token expires. Persisted as an
/// append-only file (StateDirectory/ca/spent-tokens, one "jti exp" line per token, flushed to disk before the
/// certificate is issued) so a restart cannot make a spent token usable again. Expired entries are pruned and the file
/// compacted; at most <see cref="Capacity"/> unexpired entries are held, beyond that new tokens are refused (fail closed).
/// </summary>
internal sealed partial class SpentTokens
{
    public const string FileName = "spent-tokens";
    public const int Capacity = 100_000;

    private readonly Lock _gate = new();
    private readonly Dictionary<string, long> _spent = new(StringComparer.Ordinal);
    private readonly string _path;
    private readonly TimeProvider _time;
    private int _fileLines;

    private readonly int _capacity;

    public SpentTokens(ControlPlaneOptions options, TimeProvider time, ILogger<SpentTokens> logger)
        : this(options, time, logger, Capacity)
    {
    }

    internal SpentTokens(ControlPlaneOptions options, TimeProvider time, ILogger<SpentTokens> logger, int capacity)
    {
        ArgumentNullException.ThrowIfNull(options);
        _path = Path.Combine(Path.GetFullPath(options.StateDirectory), "ca", FileName);
        _time = time;
        _capacity = capacity;
        Load(logger);
    }

    public string FilePath => _path;

    /// <summary>Gets how many unexpired spent tokens are remembered.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _spent.Count;
            }
        }
    }

    public bool IsSpent(string jti)
    {
        lock (_gate)
        {
            return _spent.ContainsKey(jti);
        }
    }

    /// <summary>
    /// Marks <paramref name="jti"/> spent and persists it; false with a reason when it was spent already or the store is
    /// full. Atomic: of concurrent callers with one jti exactly one gets true.
    /// </summary>
    public bool TryConsume(string jti, DateTimeOffset expires, out string reason)
    {
        ArgumentException.ThrowIfNullOrEmpty(jti);
        if (jti.Any(char.IsWhiteSpace))
        {
            reason = "bearer token jti must not contain white space";
            return false;
        }

        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        lock (_gate)
        {
            if (_spent.ContainsKey(jti))
            {
                reason = $"bearer token {jti} was already used; bootstrap tokens are single-use unless minted as reusable. Mint a new one";
                return false;
            }

            if (_spent.Count >= _capacity)
            {
                Prune(now);
                if (_spent.Count >= _capacity)
                {
                    reason = string.Create(CultureInfo.InvariantCulture,
                        $"the control plane already remembers {_capacity} unexpired single-use tokens; retry when some have expired, or mint shorter-lived tokens");
                    return false;
                }
            }

            // Kept until the token can no longer validate (expiry plus the clock-skew grace).
            var keepUntil = expires.ToUnixTimeSeconds() + (long)BootstrapTokens.Skew.TotalSeconds;
            Append(string.Create(CultureInfo.InvariantCulture, $"{jti} {keepUntil}\n"));
            _spent[jti] = keepUntil;
            _fileLines++;
            if (_fileLines > (2 * _spent.Count) + 1024)
            {
                Prune(now);
            }

            reason = string.Empty;
            return true;
        }
    }

    private void Load(ILogger logger)
    {
        if (!File.Exists(_path))
        {
            return;
        }

        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        var torn = 0;
        foreach (var line in File.ReadLines(_path))
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);

            // A line cut short by a crash was never acknowledged: its certificate was not issued.
            if (space <= 0 || !long.TryParse(line.AsSpan(space + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var keepUntil))
            {
                torn++;
                continue;
            }

            _fileLines++;
            if (keepUntil > now)
            {
                _spent[line[..space]] = keepUntil;
            }
        }

        if (torn > 0)
        {
            LogTornLines(logger, _path, torn);
        }

        lock (_gate)
        {
            Prune(now);
        }
    }

    /// <summary>Drops expired entries and rewrites the file with the rest (temp file + rename: never half written).</summary>
    private void Prune(long now)
    {
        foreach (var (jti, keepUntil) in _spent)
        {
            if (keepUntil <= now)
            {
                _spent.Remove(jti);
            }
        }

        var text = new StringBuilder();
        foreach (var (jti, keepUntil) in _spent)
        {
            text.Append(CultureInfo.InvariantCulture, $"{jti} {keepUntil}\n");
        }

        var temp = _path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        using (var stream = new FileStream(temp, NewFile(FileMode.CreateNew)))
        {
            stream.Write(Encoding.ASCII.GetBytes(text.ToString()));
            stream.Flush(flushToDisk: true);
        }

        File.Move(temp, _path, overwrite: true);
        _fileLines = _spent.Count;
    }

    private void Append(string line)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        using var stream = new FileStream(_path, NewFile(FileMode.Append));
        stream.Write(Encoding.ASCII.GetBytes(line));
        stream.Flush(flushToDisk: true);
    }

    private static FileStreamOptions NewFile(FileMode mode)
    {
        var options = new FileStreamOptions { Mode = mode, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        return options;
    }

    [LoggerMessage(EventId = 1, EventName = "LogTornLines", Level = LogLevel.Warning, Message = "Spent-token file {Path}: ignored {Count} incomplete line(s) (a crash while writing; those tokens were never used)")]
    private static partial void LogTornLines(ILogger logger, string path, int count);
}
