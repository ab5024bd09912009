using System.Globalization;

namespace Mesh.ScaleTest;

/// <summary>How the simulated clients subscribe and which ADS stream they use.</summary>
internal enum ClientMode
{
    /// <summary>As Mesh.Client does today: wildcard LDS and CDS, then RDS and EDS by every name those reference.</summary>
    SotwWildcard,

    /// <summary>The proxyless gRPC model: LDS by name for S services, then RDS, CDS and EDS by what those reference.</summary>
    SotwOnDemand,

    /// <summary>DeltaAggregatedResources with wildcard LDS and CDS, then RDS and EDS by name.</summary>
    DeltaWildcard,

    /// <summary>DeltaAggregatedResources subscribing by name, as <see cref="SotwOnDemand"/>.</summary>
    DeltaOnDemand,
}

/// <summary>One size of the run: services, endpoints each, clients.</summary>
internal sealed record ScaleSize(int Services, int Endpoints, int Clients);

/// <summary>The command line of the harness, validated as a whole (every error names its option).</summary>
internal sealed record ScaleSettings
{
    /// <summary>The table the issue asks for: 100/1,000/5,000 services × 20/200/1,000 clients, 10 endpoints each.</summary>
    public static readonly IReadOnlyList<(int Services, int Clients)> IssueTable =
        [(100, 20), (100, 200), (100, 1000), (1000, 20), (1000, 200), (1000, 1000), (5000, 20), (5000, 200), (5000, 1000)];

    public const string Usage = """
        dotnet run -c Release --project benchmarks/Mesh.ScaleTest -- [options]
          --services N               services (ServiceEntry, STATIC, one http port) in the generated config (100)
          --endpoints E              endpoints per service (10)
          --clients C                simulated ADS clients, all in this process (20)
          --mode M                   sotw-wildcard | sotw-ondemand | delta (= delta-wildcard, or delta-ondemand with --subscribe) |
                                     delta-wildcard | delta-ondemand (sotw-wildcard)
          --subscribe S              services each on-demand client subscribes to (10)
          --changes K                endpoint changes, one after the other (5)
          --window SECONDS           how long one change (or the restart) may take to reach every client (30)
          --sync-timeout SECONDS     how long the cold sync may take (120)
          --restart                  then kill the control plane, start it again on the same port, measure the resync
          --routing R                give the first R services a DestinationRule (two subsets) and a 90/10 VirtualService (0)
          --streams-per-connection K ADS streams per GrpcChannel (HTTP/2 connection) (50; Kestrel allows 100 per connection)
          --sizes [NxC,…]            run several sizes, one fresh control plane each; alone: the issue's table
                                     (100/1,000/5,000 services × 20/200/1,000 clients)
          --control-plane DLL        another build of Mesh.ControlPlane.dll to measure (another branch, before/after);
                                     default: the one this project references
        """;

    public IReadOnlyList<ScaleSize> Sizes { get; init; } = [new(100, 10, 20)];

    public ClientMode Mode { get; init; } = ClientMode.SotwWildcard;

    public int Subscribe { get; init; } = 10;

    public int Changes { get; init; } = 5;

    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan SyncTimeout { get; init; } = TimeSpan.FromSeconds(120);

    public bool Restart { get; init; }

    public int Routing { get; init; }

    public int StreamsPerConnection { get; init; } = 50;

    /// <summary>The control plane to start: null for the build this project references.</summary>
    public string? ControlPlane { get; init; }

    public bool IsOnDemand => Mode is ClientMode.SotwOnDemand or ClientMode.DeltaOnDemand;

    public bool IsDelta => Mode is ClientMode.DeltaWildcard or ClientMode.DeltaOnDemand;

    public static string ModeName(ClientMode mode) => mode switch
    {
        ClientMode.SotwWildcard => "sotw-wildcard",
        ClientMode.SotwOnDemand => "sotw-ondemand",
        ClientMode.DeltaWildcard => "delta-wildcard",
        _ => "delta-ondemand",
    };

    /// <summary>Parses the command line; every problem found is reported at once, each naming its option.</summary>
    public static ScaleSettings Parse(string[] args, out List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(args);
        var found = new List<string>();
        errors = found;
        int services = 100, endpoints = 10, clients = 20, subscribe = 10, changes = 5, routing = 0, streamsPerConnection = 50;
        double window = 30, syncTimeout = 120;
        string? mode = null;
        string? controlPlane = null;
        string? sizes = null;
        var sizesGiven = false;
        var subscribeGiven = false;
        var restart = false;
        for (var i = 0; i < args.Length; i++)
        {
            var option = args[i];
            string? Value()
            {
                if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    return args[++i];
                }

                found.Add($"{option} needs a value");
                return null;
            }

            switch (option)
            {
                case "--services": services = Integer(option, Value(), 1, 100_000, errors, services); break;
                case "--endpoints": endpoints = Integer(option, Value(), 1, 5_000, errors, endpoints); break;
                case "--clients": clients = Integer(option, Value(), 1, 20_000, errors, clients); break;
                case "--subscribe": subscribe = Integer(option, Value(), 1, 100_000, errors, subscribe); subscribeGiven = true; break;
                case "--changes": changes = Integer(option, Value(), 0, 10_000, errors, changes); break;
                case "--routing": routing = Integer(option, Value(), 0, 100_000, errors, routing); break;
                case "--streams-per-connection": streamsPerConnection = Integer(option, Value(), 1, 100, errors, streamsPerConnection); break;
                case "--window": window = Seconds(option, Value(), errors, window); break;
                case "--sync-timeout": syncTimeout = Seconds(option, Value(), errors, syncTimeout); break;
                case "--mode": mode = Value(); break;
                case "--restart": restart = true; break;
                case "--control-plane":
                    controlPlane = Value();
                    if (controlPlane is not null && !File.Exists(controlPlane))
                    {
                        found.Add($"--control-plane: {controlPlane} does not exist (give the path of a built Mesh.ControlPlane.dll)");
                    }

                    break;
                case "--sizes":
                    sizesGiven = true;
                    if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    {
                        sizes = args[++i];
                    }

                    break;
                default: errors.Add($"unknown option '{option}'"); break;
            }
        }

        var parsedMode = mode switch
        {
            null or "sotw-wildcard" => ClientMode.SotwWildcard,
            "sotw-ondemand" => ClientMode.SotwOnDemand,
            "delta" => subscribeGiven ? ClientMode.DeltaOnDemand : ClientMode.DeltaWildcard,
            "delta-wildcard" => ClientMode.DeltaWildcard,
            "delta-ondemand" => ClientMode.DeltaOnDemand,
            _ => (ClientMode?)null,
        };
        if (parsedMode is null)
        {
            errors.Add($"--mode must be sotw-wildcard, sotw-ondemand, delta, delta-wildcard or delta-ondemand (got '{mode}')");
        }

        List<ScaleSize> sizeList = [new(services, endpoints, clients)];
        if (sizesGiven)
        {
            sizeList = sizes is null ? [.. IssueTable.Select(s => new ScaleSize(s.Services, endpoints, s.Clients))] : ParseSizes(sizes, endpoints, errors);
        }

        if (routing > sizeList.Min(s => s.Services))
        {
            errors.Add($"--routing ({routing}) cannot exceed --services ({sizeList.Min(s => s.Services)})");
        }

        if (parsedMode is ClientMode.SotwOnDemand or ClientMode.DeltaOnDemand && subscribe > sizeList.Min(s => s.Services))
        {
            errors.Add($"--subscribe ({subscribe}) cannot exceed --services ({sizeList.Min(s => s.Services)})");
        }

        return new ScaleSettings
        {
            Sizes = sizeList,
            Mode = parsedMode ?? ClientMode.SotwWildcard,
            Subscribe = subscribe,
            Changes = changes,
            Window = TimeSpan.FromSeconds(window),
            SyncTimeout = TimeSpan.FromSeconds(syncTimeout),
            Restart = restart,
            Routing = routing,
            StreamsPerConnection = streamsPerConnection,
            ControlPlane = controlPlane is null ? null : Path.GetFullPath(controlPlane),
        };
    }

    private static List<ScaleSize> ParseSizes(string text, int endpoints, List<string> errors)
    {
        var sizes = new List<ScaleSize>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pieces = part.Split('x');
            if (pieces.Length == 2
                && int.TryParse(pieces[0], NumberStyles.None, CultureInfo.InvariantCulture, out var services) && services > 0
                && int.TryParse(pieces[1], NumberStyles.None, CultureInfo.InvariantCulture, out var clients) && clients > 0)
            {
                sizes.Add(new ScaleSize(services, endpoints, clients));
            }
            else
            {
                errors.Add($"--sizes: '{part}' must be <services>x<clients>, e.g. 1000x200");
            }
        }

        if (sizes.Count == 0)
        {
            errors.Add("--sizes must list at least one <services>x<clients>");
            sizes.Add(new ScaleSize(1, endpoints, 1));
        }

        return sizes;
    }

    private static int Integer(string option, string? text, int min, int max, List<string> errors, int fallback)
    {
        if (text is null)
        {
            return fallback;
        }

        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
        {
            return value;
        }

        errors.Add($"{option} must be an integer from {min} to {max} (got '{text}')");
        return fallback;
    }

    private static double Seconds(string option, string? text, List<string> errors, double fallback)
    {
        if (text is null)
        {
            return fallback;
        }

        if (double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) && value is > 0 and <= 3600)
        {
            return value;
        }

        errors.Add($"{option} must be a number of seconds, more than 0 and at most 3600 (got '{text}')");
        return fallback;
    }
}
