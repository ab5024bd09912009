using System.Globalization;
using Mesh.ControlPlane.Configuration;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// <c>mesh-control-plane token --namespace ns --service-account sa [--ttl 01:00:00] [--reusable] [--ControlPlane:StateDirectory=dir]</c>:
/// prints one bootstrap token (single-use unless --reusable). Needs only the signing key, so it works offline and beside a
/// running control plane; like the admin API it refuses reserved identities (ControlPlane:Bootstrap:ReservedIdentities).
/// </summary>
internal static class TokenCommand
{
    public const string Usage = "usage: mesh-control-plane token --namespace <ns> --service-account <sa> [--ttl 01:00:00] [--reusable] [--ControlPlane:StateDirectory=<dir>]";

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        string? ns = null;
        string? serviceAccount = null;
        string? ttlText = null;
        var reusable = false;
        var rest = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--namespace" or "-n" when i + 1 < args.Length:
                    ns = args[++i];
                    break;
                case "--service-account" when i + 1 < args.Length:
                    serviceAccount = args[++i];
                    break;
                case "--ttl" when i + 1 < args.Length:
                    ttlText = args[++i];
                    break;
                case "--reusable":
                    reusable = true;
                    break;
                default:
                    rest.Add(args[i]);
                    break;
            }
        }

        var ttl = BootstrapTokens.DefaultTtl;
        if (ttlText is not null && !TimeSpan.TryParse(ttlText, CultureInfo.InvariantCulture, out ttl))
        {
            stderr.WriteLine($"--ttl '{ttlText}' must be a TimeSpan like 01:00:00 (at most 24:00:00)");
            return 2;
        }

        var error = BootstrapTokens.ValidateRequest(ns, serviceAccount, ttl);
        if (error is not null)
        {
            stderr.WriteLine(error.Replace("serviceAccount", "--service-account", StringComparison.Ordinal).Replace("namespace '", "--namespace '", StringComparison.Ordinal));
            stderr.WriteLine(Usage);
            return 2;
        }

        try
        {
            // The same sources, in the same order, as the server (appsettings.json, environment, arguments), so the CLI
            // sees the StateDirectory and ReservedIdentities the running control plane uses.
            var configuration = new ConfigurationBuilder()
                .AddJsonFile(Path.Combine(Directory.GetCurrentDirectory(), "appsettings.json"), optional: true)
                .AddEnvironmentVariables()
                .AddCommandLine([.. rest])
                .Build();
            var options = ControlPlaneOptions.Load(configuration);
            using var tokens = BootstrapTokens.LoadExisting(options, TimeProvider.System);
            if (tokens.CheckMint(ns, serviceAccount, ttl) is { } refused)
            {
                stderr.WriteLine(refused);
                return 2;
            }

            stdout.WriteLine(tokens.Mint(ns!, serviceAccount!, ttl, reusable).Token);
            return 0;
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine(ex.Message);
            return 1;
        }
    }
}
