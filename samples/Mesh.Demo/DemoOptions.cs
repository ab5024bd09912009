using System.Globalization;

namespace Mesh.Demo;

/// <param name="RatingsInstances">Instances of ratings, the Python service behind its mesh-sidecar (0 leaves it out).</param>
internal sealed record DemoOptions(TimeSpan? Duration, int RequestsPerSecond, int InventoryInstances, string ConfigDirectory, int RatingsInstances = 1)
{
    public static DemoOptions Parse(string[] args)
    {
        TimeSpan? duration = null;
        var rps = 20;
        var inventory = 2;
        var ratings = 1;
        string? config = null;
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--duration" when value is not null:
                    duration = TimeSpan.FromSeconds(double.Parse(value, CultureInfo.InvariantCulture));
                    i++;
                    break;
                case "--rps" when value is not null:
                    rps = Math.Clamp(int.Parse(value, CultureInfo.InvariantCulture), 1, 500);
                    i++;
                    break;
                case "--inventory" when value is not null:
                    inventory = Math.Clamp(int.Parse(value, CultureInfo.InvariantCulture), 1, 5);
                    i++;
                    break;
                case "--ratings" when value is not null:
                    ratings = Math.Clamp(int.Parse(value, CultureInfo.InvariantCulture), 0, 3);
                    i++;
                    break;
                case "--config" when value is not null:
                    config = Path.GetFullPath(value);
                    i++;
                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{args[i]}'. Usage: Mesh.Demo [--duration <seconds>] [--rps <1-500>] [--inventory <1-5>] [--ratings <0-3>] [--config <folder>]");
            }
        }

        return new DemoOptions(duration, rps, inventory, config ?? OrdersRoutes.ConfigDirectory(), ratings);
    }
}
