namespace Mesh.ControlPlane;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
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
