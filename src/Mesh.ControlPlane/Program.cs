using Mesh.ControlPlane.Security;

namespace Mesh.ControlPlane;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "token")
        {
            return TokenCommand.Run(args[1..], Console.Out, Console.Error);
        }

        ControlPlaneHost host;
        try
        {
            host = await ControlPlaneHost.StartAsync(args);
        }
        catch (InvalidOperationException ex)
        {
            await Console.Error.WriteLineAsync(ex.Message);
            return 1;
        }
        catch (IOException ex)
        {
            await Console.Error.WriteLineAsync($"Mesh control plane failed to start: {ex.Message}");
            return 1;
        }

        await using (host)
        {
            Console.Out.WriteLine(host.ReadyLine);
            Console.Out.Flush();
            await host.WaitForShutdownAsync();
        }

        return 0;
    }
}
